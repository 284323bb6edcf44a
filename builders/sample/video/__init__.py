"""Synthetic music videos for the embedded sample corpus.

``render_video(spec, path)`` draws a short, small H.264 MP4 whose look follows
``spec.mv_style`` (one of the ten MV types), ``spec.video_kind`` (moving video, one still,
a slideshow of stills, or a slow zoom/pan montage of stills) and ``spec.palette``, and returns
the ground truth the builder's tests compare against. Everything is procedural (numpy +
OpenCV drawing), deterministic in ``spec.seed``, and fast: a 30 s clip at 320x180, 12 fps
encodes in well under two seconds.

Styles (what a viewer would see):

- Lyric Video: lyric lines sliding in over a drifting colour gradient with soft bokeh.
- Live Performance: dark stage, sweeping coloured beams flashing on the beat, band and crowd
  silhouettes, fast cuts between wide, close-up, crowd and light-rig shots.
- Dance Performance: a troupe of dancers moving in sync with ``spec.tempo`` in a lit studio,
  cuts on bar lines between wide and medium framings.
- Cinematic Drama: dark, letterboxed (2.35:1), slow push-ins and pans, rain, few cuts, a
  face in close-up.
- Nature/Scenic: sky, sun, clouds, parallax hill ridges and shimmering water, slow pans.
- Animation: flat saturated cartoon shapes with outlines bouncing over flat backgrounds.
- Artistic/Abstract: swirling plasma, spirals and kaleidoscopes in the palette's colours.
- Story Narrative: street, room and close-up scenes with a drawn face, cut every few seconds.
- Behind-the-Scenes: desaturated, grainy, handheld-shake studio footage.
- video_kind "still" / "slideshow" / "ken_burns": procedurally drawn photographs, shown as
  one still, as hard-cut stills, or with a slow zoom/pan (Ken Burns).

Faces are drawn only in some shots, and ``has_face`` is True only where the builder's face
detector (``builders.video.faces``, OpenCV's bundled frontal-face Haar cascade) actually
found a face on rendered frames.

Modules, one job each: ``canvas`` (palette, colour helpers, the frame context, shots and
plans), ``draw`` (primitives: faces, figures, landscape layers, text, camera warp),
``photos`` (procedural photographs and the still / slideshow / Ken Burns kinds),
``styles_performance`` and ``styles_imagery`` (one shot plan per moving MV type),
``soundtrack`` (muxing the clip's audio) and ``render`` (``render_video``: plan, draw, encode,
verify faces, return the truth). Underscored names are shared inside this package only.
"""

from builders.sample.video.render import FPS, HEIGHT, WIDTH, render_video

__all__ = ["FPS", "HEIGHT", "WIDTH", "render_video"]
