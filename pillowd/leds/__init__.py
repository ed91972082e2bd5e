"""The LEDs: effects, the scene timeline, the renderer and the light output.

Data flows one way through it: a command's scene becomes a `Playing` on the
`scenes.Timeline`, the `render.Renderer` turns it into frames with `effects`
(each effect and its checked parameters) and `frames` (pure functions of time),
and writes them to the strip through `light` (brightness, gamma, the power
limit, transitions); `cue` blinks one LED over it while the pillow is in trouble.

May import: hardware (the strip), messages, feel, history, settings, errors, seams
(floors below 5).
Must not import: the page, hugs, the player or daemon: whoever wants frames
subscribes with `Renderer.on_frame`, whoever wants the scene `Timeline.on_change`.
"""


def build_lights(leds, idle, strip, *, hold_scale: float = 2.0):
    """(the scene timeline, the renderer) for the [leds] settings, starting on the
    *idle* scene and writing to *strip*; a held hug plays its hold × *hold_scale*
    ([button] hold_scale)."""
    from .light import LightOutput
    from .render import Renderer
    from .scenes import Timeline

    timeline = Timeline(idle, hold_scale=hold_scale)
    output = LightOutput(leds.count, brightness=leds.brightness,
                         max_milliamps=leds.max_milliamps, gamma=leds.gamma,
                         milliamps_per_channel=leds.milliamps_per_led / 3,
                         idle_milliamps_per_led=leds.idle_milliamps_per_led)
    return timeline, Renderer(timeline, strip, output, fps=leds.fps)
