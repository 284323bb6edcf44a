"""The offline rules scored on inputs that do not come from the sample generators.

The theme lexicon (``detect_themes``) and the MV-type rules (``classify_mv_type``) were written
alongside ``builders/sample/lyrics.py`` and ``builders/sample/video/``, so scoring them on the
sample corpus is partly circular. Here they meet inputs made another way: lyric lines written
by hand for this file (their overlap with the generator's words is measured below), and videos
drawn with numpy recipes of this file, encoded with PyAV. The bars are the measured accuracy
of the current rules, set a little lower; the figures are in the docstrings.
"""

from __future__ import annotations

import re
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from builders.llm.offline import classify_mv_type, detect_themes
from builders.video import analyse_video, static_decision
from mv4all.schema import Track

REPO = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------- lyrics themes

# (expected theme, a line written for this test). Not taken from builders/sample/lyrics.py:
# test_hand_written_lines_are_independent_of_the_generator checks it.
EN_LINES = [
    ("love", "I keep your letters folded in my coat, every word still says I love you"),
    ("love", "When you hold my hand the whole room goes quiet, I adore the way you say my name"),
    ("heartbreak", "You packed your things and slammed the door, now I cry into the pillow you left behind"),
    ("heartbreak", "We said goodbye at the station, my heart in pieces on the platform"),
    ("night", "Under the midnight sky the stars are the only ones awake with me"),
    ("night", "The moon hangs low over the rooftops while the whole town sleeps"),
    ("memory", "I found an old photograph in a shoebox, we were laughing on a yellow bicycle"),
    ("memory", "Do you remember the songs we used to sing in your father's car"),
    ("rebellion", "We will not obey, tear down their rules and march into the square"),
    ("rebellion", "Raise your fist against the kings, the revolution starts with us"),
    ("freedom", "Open the cage and let me go, I want to fly where nobody can find me"),
    ("freedom", "No chains on my wrists anymore, I'm running free across the plains"),
    ("nature", "Tall pines whisper on the mountain and the river carries the snow melt down"),
    ("nature", "Moss on the stones, ferns in the shade, the forest breathes slow"),
    ("home", "Mama's kitchen smells of bread, the porch light's on, I'm coming home"),
    ("home", "After all these years away I just want to sleep in my old room at home"),
    ("dance", "Get up and move to the rhythm, the DJ drops the beat and the floor is shaking"),
    ("dance", "Spin me round on the dance floor till the lights come up"),
    ("dreams", "Last night I dreamed I was floating above a city made of glass"),
    ("dreams", "Close your eyes and drift away, sleep will carry you to a softer world"),
    ("time", "The clock on the wall keeps ticking, every hour slipping through my fingers"),
    ("time", "Tomorrow comes too fast, the seasons turn before I can catch my breath"),
    ("city", "Taxis honking on the avenue, steam rising from the subway grates"),
    ("city", "Concrete towers and crowded streets, this town never stops to rest"),
    ("struggle", "Working double shifts to pay the rent, my back is aching but I won't give in"),
    ("struggle", "Every step is uphill, I'm tired and hungry but I keep on climbing"),
    ("childhood", "We built a treehouse in the backyard and played hide and seek till dinner"),
    ("childhood", "When I was a kid I flew paper kites and collected marbles in a jar"),
    ("joy", "I can't stop smiling, the sun is out and everybody's laughing"),
    ("joy", "Everybody clap along and celebrate, today is a happy day"),
    ("anger", "I'm so angry I could scream, you lied to me again and again"),
    ("anger", "Rage is boiling in my chest, I'll burn every bridge you built"),
    ("war", "Soldiers in the trenches waiting for the cannons to fall silent"),
    ("war", "The battle raged for seven days, the fields were red with blood"),
    ("summer", "Lying on the beach with ice cream melting in the July heat"),
    ("summer", "Summer vacation, flip flops and sunburn, we swim until the evening"),
    ("loneliness", "Eating dinner by myself again, nobody calls, the phone stays silent"),
    ("loneliness", "I'm alone in a crowded room, invisible to everyone"),
    ("distance", "You're three thousand miles away and I miss you every single day"),
    ("distance", "Time zones between us, I count the days until your plane lands"),
    ("journey", "Packing up the car, hitting the highway with the windows down"),
    ("journey", "Mile after mile on the open road, no destination in mind"),
    ("friendship", "You've always had my back, my best friend through thick and thin"),
    ("friendship", "The gang is back together, laughing round the fire like old times"),
    ("adventure", "Hoist the sails, we're searching for a hidden treasure on a distant island"),
    ("adventure", "Into the jungle with a compass and a torch, who knows what we will discover"),
    ("sea", "The waves crash on the shore and the seagulls cry above the harbor"),
    ("sea", "Salt on my lips, the ocean calling me back to the deep blue"),
    ("hope", "Even in the darkest hour I believe the light will come again"),
    ("hope", "Keep holding on, tomorrow brings a brighter morning"),
]
ES_LINES = [
    ("love", "Te quiero con toda mi alma, eres la luz de mis días"),
    ("love", "Cuando me besas se detiene el mundo"),
    ("heartbreak", "Te fuiste sin decir nada y me dejaste el corazón partido"),
    ("heartbreak", "Lloro cada noche desde que te marchaste"),
    ("night", "La luna ilumina las calles vacías de madrugada"),
    ("night", "Bajo las estrellas bailamos hasta el amanecer"),
    ("dance", "Mueve la cintura, que suene la música y todos a bailar"),
    ("dance", "En la pista de baile no existe el cansancio"),
    ("sea", "Las olas del mar me cuentan secretos en la orilla"),
    ("sea", "Un barco pesquero se pierde en el horizonte azul"),
    ("memory", "Me acuerdo de aquellas tardes en casa de la abuela"),
    ("memory", "Guardo tus fotos en una caja como un tesoro del pasado"),
    ("freedom", "Quiero volar lejos como un pájaro sin jaula"),
    ("freedom", "Rompí las cadenas, ahora soy libre"),
    ("joy", "Hoy la vida es una fiesta, todos ríen y cantan"),
    ("joy", "Qué felicidad tan grande, sonrío sin parar"),
    ("dreams", "Anoche soñé que caminaba sobre las nubes"),
    ("city", "El ruido del tráfico y los rascacielos de la gran ciudad"),
    ("home", "Vuelvo a mi pueblo, a la casa donde crecí"),
    ("war", "Los soldados marchan hacia la batalla"),
    ("loneliness", "Estoy sola en esta habitación, nadie me llama"),
    ("time", "El reloj no se detiene y el tiempo se me escapa"),
]

# Function words left out of the overlap measure (any English or Spanish text shares them).
_FUNCTION_WORDS = set("""
the and you your you're you've i'm i'll won't can't for with from into onto over under till until this that these those
they them their there then than when where what which while who whom whose will would could should have has had been
were was are not but all any every each some just only still again always never even back away down round like about
above across after against around before behind between through together whole made make come comes keep keeps
everybody everyone nobody myself out one ones day days
que los las del por con sin una uno unos unas como cuando desde donde esta este esto hasta hacia para pero sobre todo
todos toda ahora tan qué soy eres mis tus nos les
""".split())
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


def _content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if len(w) >= 3 and w not in _FUNCTION_WORDS}


def _words_of(obj) -> set[str]:
    if isinstance(obj, str):
        return set(_WORD.findall(obj.lower()))
    values = obj.values() if isinstance(obj, dict) else obj
    return set().union(set(), *(_words_of(v) for v in values))


def _top1(lines) -> float:
    hits = 0
    for theme, line in lines:
        found = detect_themes(line)
        hits += bool(found) and found[0] == theme
    return hits / len(lines)


def test_hand_written_lines_are_independent_of_the_generator():
    """Measured: 28% of a line's content words are among the words the generator uses for the
    same theme (the generator's own lyrics: 100%), and no line shares four words in a row with
    builders/sample/lyrics.py."""
    from builders.sample.lyrics import LEXICON

    shared = total = 0
    for lang, lines in (("en", EN_LINES), ("es", ES_LINES)):
        for theme, line in lines:
            words = _content_words(line)
            shared += len(words & _words_of(LEXICON[lang].get(theme, {})))
            total += len(words)
    assert shared / total <= 0.35, shared / total
    source = _WORD.findall((REPO / "builders" / "sample" / "lyrics.py").read_text(encoding="utf-8").lower())
    grams = {tuple(source[i : i + 4]) for i in range(len(source) - 3)}
    for _, line in EN_LINES + ES_LINES:
        words = _WORD.findall(line.lower())
        assert not {tuple(words[i : i + 4]) for i in range(len(words) - 3)} & grams, line


def test_theme_lexicon_on_hand_written_lines():
    """Top-1 accuracy on the lines above (measured: English 43/50 = 86%, Spanish 17/22 = 77%).

    The misses are lines whose theme lives in words the lexicon lacks ("obey", "besas",
    "felicidad") or where an incidental word wins ("sleep" -> dreams, "hour" -> time,
    "corazón" -> love, "casa" -> home).
    """
    en, es = _top1(EN_LINES), _top1(ES_LINES)
    assert en >= 0.82, en
    assert es >= 0.72, es
    # a line with no theme word at all is not forced into a theme
    assert detect_themes("Numbers on a receipt, seven, eight, nine") == []


# --------------------------------------------------------------------------- MV types

W, H, FPS, SECONDS = 320, 180, 8, 8.0  # small and short: 12 clips in a few seconds
N = int(FPS * SECONDS)


def _write(path: Path, frame) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.options = {"preset": "ultrafast", "threads": "1", "crf": "18"}
        for i in range(N):
            picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame(i)), format="rgb24")
            for packet in stream.encode(picture):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def _noise(rng, h: int, w: int, cell: int) -> np.ndarray:
    small = rng.random((max(2, h // cell), max(2, w // cell), 3)).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC) * 255.0


def _photo(seed: int, h: int = H, w: int = W) -> np.ndarray:
    """A photo-like picture: large soft blobs, smaller detail, film grain."""
    rng = np.random.default_rng(seed)
    img = 0.6 * _noise(rng, h, w, 40) + 0.4 * _noise(rng, h, w, 6) + rng.normal(0, 6, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _still():
    img = _photo(1)
    return lambda i: img


def _slideshow():
    slides = [_photo(10 + k) for k in range(4)]
    return lambda i: slides[min(3, i // (N // 4))]


def _slow_pan():
    wide = _photo(2, H, 2 * W)
    return lambda i: wide[:, int(round(i * W / N)) :][:, :W]


def _slow_zoom():
    img = _photo(3)

    def frame(i):
        m = cv2.getRotationMatrix2D((W / 2, H / 2), 0, 1.0 + 0.25 * i / N)
        return cv2.warpAffine(img, m, (W, H), borderMode=cv2.BORDER_REFLECT)

    return frame


def _cartoon():
    flat = [(230, 40, 40), (40, 90, 220), (250, 200, 30), (40, 180, 80), (200, 60, 200)]

    def frame(i):
        shot, t = i // (2 * FPS), i / FPS
        img = np.empty((H, W, 3), np.uint8)
        img[:] = flat[shot % 5]
        cv2.circle(img, (int(W * (0.2 + 0.6 * ((t * 0.3) % 1.0))), H // 2), 30, flat[(shot + 2) % 5], -1)
        cv2.rectangle(img, (20, H - 50), (90 + int(20 * np.sin(t)), H - 20), flat[(shot + 4) % 5], -1)
        return img

    return frame


def _lyric():
    lines = ["we were young and the night was long", "hold on to the words you never said",
             "every light in this town is calling", "sing it back to me one more time",
             "the river knows where we are going"]

    def frame(i):
        t = i / FPS
        g = (np.linspace(30, 90, W, dtype=np.float32)[None, :, None]
             + 20 * np.sin(t + np.linspace(0, 3, H))[:, None, None])
        img = np.clip(np.concatenate([g * 0.5, g * 0.3, g], axis=2), 0, 255).astype(np.uint8)
        cv2.putText(img, lines[int(t // 2) % len(lines)], (12, H // 2 + 8), cv2.FONT_HERSHEY_SIMPLEX, 0.55,
                    (255, 255, 255), 2, cv2.LINE_AA)
        return img

    return frame


def _cinematic():
    shots = [(_photo(20 + k).astype(np.float32) * 0.35).astype(np.uint8) for k in range(2)]  # a dark grade
    bar = int(H * 0.12)

    def frame(i):
        img = np.roll(shots[0 if i < N * 0.6 else 1], int(i * 0.3) % 20, axis=1)
        img[:bar] = 0
        img[H - bar :] = 0
        return img

    return frame


def _live():
    shots = [_photo(30 + k).astype(np.float32) * 0.25 for k in range(8)]

    def frame(i):
        strobe = 1.0 + 2.5 * (((i * 7919) % 5) == 0)  # irregular flashes
        spot = np.zeros((H, W, 1), np.float32)
        cv2.circle(spot, (int(W * (0.5 + 0.4 * np.sin(i / 3.0))), H // 3), 50, 1.0, -1)
        img = shots[int(i // (1.5 * FPS)) % 8] * strobe + spot * np.array([120, 60, 200], np.float32) * strobe
        return np.clip(img, 0, 255).astype(np.uint8)

    return frame


def _handheld():
    grey = cv2.cvtColor(cv2.cvtColor(_photo(5, H + 40, W + 40), cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    washed = (0.85 * grey + 0.15 * _photo(6, H + 40, W + 40)).astype(np.uint8)
    jitter = np.random.default_rng(7).normal(0, 4, (N, 2))

    def frame(i):
        dx, dy = np.clip(jitter[i] + 20, 0, 40).astype(int)
        return washed[dy : dy + H, dx : dx + W]

    return frame


DANCE_BEAT = 0.5  # seconds: 120 BPM, the song's tempo below


def _dance():
    def frame(i):
        t = i / FPS
        img = np.empty((H, W, 3), np.uint8)
        img[:] = (60, 50, 90)
        y = int(H * 0.35 + 25 * abs(np.sin(np.pi * (t % DANCE_BEAT) / DANCE_BEAT)))
        arm = int(30 * np.sin(np.pi * t / DANCE_BEAT))
        for x in (80, 160, 240):  # three dancers, bouncing on the beat
            cv2.circle(img, (x, y - 30), 12, (230, 200, 170), -1)
            cv2.line(img, (x, y - 18), (x, y + 40), (240, 240, 240), 10)
            cv2.line(img, (x, y), (x - 25, y - arm), (240, 240, 240), 6)
            cv2.line(img, (x, y), (x + 25, y + arm), (240, 240, 240), 6)
            cv2.line(img, (x, y + 40), (x - 15 + arm // 3, y + 75), (240, 240, 240), 7)
            cv2.line(img, (x, y + 40), (x + 15 - arm // 3, y + 75), (240, 240, 240), 7)
        return img

    return frame


def _scenic():
    rng = np.random.default_rng(8)
    land = np.zeros((H, 2 * W, 3), np.float32)
    land[:] = (120, 170, 235)  # sky
    hills = (H * 0.45 + 12 * np.sin(np.linspace(0, 9, 2 * W)) + rng.normal(0, 1, 2 * W)).astype(int)
    land[np.arange(H)[:, None] >= hills[None, :]] = (70, 130, 60)
    land[int(H * 0.7) :] = (40, 90, 150)  # a lake
    land = np.clip(land + rng.normal(0, 4, land.shape), 0, 255).astype(np.uint8)
    lake = int(H * 0.7)

    def frame(i):
        img = land[:, int(i * 0.4) :][:, :W].copy()
        shimmer = (6 * np.sin(np.arange(W) / 5.0 + i / 2.0)).astype(np.int16)
        img[lake:] = np.clip(img[lake:].astype(np.int16) + shimmer[None, :, None], 0, 255).astype(np.uint8)
        return img

    return frame


def _plasma():
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)

    def frame(i):
        t = i / FPS
        v = np.sin(xx / 23 + t) + np.sin(yy / 17 - 1.3 * t) + np.sin((xx + yy) / 31 + 0.7 * t)
        hue = ((v + 3) / 6 * 180 + t * 20) % 180
        hsv = np.stack([hue, np.full_like(hue, 230), np.full_like(hue, 220)], axis=2).astype(np.uint8)
        return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)

    return frame


# name -> (recipe, the MV type a viewer would name). No recipe draws faces: Story Narrative is not covered.
RECIPES = {
    "still": (_still, "Static/Dynamic Picture Montage"),
    "slideshow": (_slideshow, "Static/Dynamic Picture Montage"),
    "slow_pan": (_slow_pan, "Static/Dynamic Picture Montage"),
    "slow_zoom": (_slow_zoom, "Static/Dynamic Picture Montage"),
    "cartoon": (_cartoon, "Animation"),
    "lyric": (_lyric, "Lyric Video"),
    "cinematic": (_cinematic, "Cinematic Drama"),
    "live": (_live, "Live Performance"),
    "handheld": (_handheld, "Behind-the-Scenes"),
    "dance": (_dance, "Dance Performance"),
    "scenic": (_scenic, "Nature/Scenic"),
    "plasma": (_plasma, "Artistic/Abstract"),
}
SONG = Track(id="x" * 16, artist="a", song="s", tempo=120.0)


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    root = tmp_path_factory.mktemp("drawn_mvs")
    return {name: analyse_video(_write(root / f"{name}.mp4", recipe()), root / f"f_{name}", clip_seconds=SECONDS)
            for name, (recipe, _) in RECIPES.items()}


def test_mv_type_rules_on_videos_drawn_without_the_sample_renderer(drawn):
    """Measured: 9 of 12 (75%). Misses: the strobe-lit live show reads as Dance Performance (its
    motion energy is periodic), the dark letterboxed drift as a picture montage (almost no
    motion), and the 120 BPM dance as motionless (see below). Fragile: the same pan drawn at
    10 fps (2.2 px steps rounded to whole pixels, a judder) reads as Dance Performance too."""
    got = {name: classify_mv_type(v, track=SONG) for name, v in drawn.items()}
    right = [name for name, (_, want) in RECIPES.items() if got[name] == want]
    assert len(right) >= 8, {name: (RECIPES[name][1], got[name]) for name in RECIPES if name not in right}
    # the clear cases, one per rule family, stay right
    for name in ("still", "slideshow", "cartoon", "lyric", "plasma"):
        assert got[name] == RECIPES[name][1], (name, got[name])


@pytest.mark.xfail(strict=True, reason="product: within-shot motion compares frames 0.5 s apart, so motion that "
                   "repeats every 0.5 s (120 BPM) measures 0 and the static filter drops the clip")
def test_dance_in_time_with_a_120_bpm_song_is_not_a_still(drawn):
    v = drawn["dance"]
    assert v.motion_periodicity > 0.5  # the dense measures do see the rhythm
    keep, reason = static_decision(v)
    assert keep, reason
