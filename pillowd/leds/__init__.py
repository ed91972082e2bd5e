"""The LEDs: effects, the scene timeline, the renderer and the light output.

Data flows one way through it: a command's scene becomes a `Playing` on the
`scenes.Timeline`, the `render.Renderer` turns it into frames with `effects`
(pure functions of time) and writes them to the strip through `light`
(brightness, gamma, the power limit, transitions).

May import: hardware (the strip), messages, history, settings, errors, seams
(floors below 5).
Must not import: the page, hugs, the player or daemon: whoever wants frames
subscribes with `Renderer.on_frame`, whoever wants the scene `Timeline.on_change`.
"""
