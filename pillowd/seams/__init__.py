"""The seams: where the pillow is sewn onto the system it runs on.

`systemd` (READY, STATUS, the watchdog, the journal), `threads` (every thread
named in the kernel), `files` (writing a file whole, private when it must be),
`credentials` (systemd's LoadCredential), `printable` (nothing a sender wrote
steers a terminal or a log). Each wraps one thing of the operating system, so a
test can put a real one in its place (a Unix socket as NOTIFY_SOCKET, a folder).

May import: errors (floor 0) and each other.
Must not import: anything of the pillow above them (messages, queues, the page, …).
"""
