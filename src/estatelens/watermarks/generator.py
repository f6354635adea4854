"""Synthetic watermarks: overlays composited onto clean photos, with the mask of where they are.

No labelled set of watermarked listing photos exists, so the watermark network learns from clean
photos that get an overlay half of the time, the way the crop network learns from photos it crops
itself (crops/generator.py). An overlay is drawn on a transparent layer and composited at an
opacity; its mask (every pixel the layer covers, however faint) is the network's dense target.

The kinds, after what portals and MLSs receive (data/labels/watermark.csv lists real ones):

- **corner mark**: a board's or agency's short name, a URL or "(c) 2016 NAME" in a corner or
  along an edge, small (2 to 7 % of the short side), plain, outlined or shadowed;
- **stamp**: the same on a filled box (the "(c) 2016 CCAR" kind);
- **date**: a camera's date stamp, orange or yellow digits;
- **logo**: a drawn emblem (house outline, circle, rounded square, initials) with a name under it,
  often white and half transparent;
- **banner**: an agency's name, phone number or URL across the middle, large and faint;
- **tiled**: a name repeated diagonally over the whole photo, very faint;
- **strip**: URL and phone on a translucent band along the bottom or top.

Text comes in Latin (with accents), Cyrillic and Greek, in the fonts at hand (matplotlib's DejaVu
family, the system's Liberation and DejaVu fonts, Pillow's default), at opacities down to 10 %.

Shortcuts and what is done about them: every sample of both classes goes the same way through a
random enlargement (the overlay is drawn at that size, as an agency draws it on the full-size
photo), a JPEG re-encoding at quality 55 to 95 and the reduction to the network's size, so that
neither resampling nor compression traces tell the classes apart; greyscale and brightness
changes are drawn for both classes alike.
"""
from __future__ import annotations

import glob
import io
import math
import os
import random
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

KINDS = {"corner": 0.30, "stamp": 0.12, "date": 0.06, "logo": 0.17, "banner": 0.15, "tiled": 0.08, "strip": 0.12}

LATIN = "abcdefghijklmnopqrstuvwxyz"
ACCENTED = "áéíóúàèìòùâêîôûäëïöüñçãõøåæœß"
CYRILLIC = "абвгдежзийклмнопрстуфхцчшщыэюя"
GREEK = "αβγδεζηθικλμνξοπρστυφχψω"
WORDS = ["realty", "homes", "estate", "properties", "immobilien", "inmobiliaria", "immobiliare",
         "immobilier", "makelaar", "nieruchomości", "недвижимость", "агентство", "ακίνητα", "group",
         "living", "partners", "house", "realtors", "photo", "studio", "mls", "casa", "haus", "dom"]
TLDS = ["com", "es", "de", "it", "fr", "ru", "nl", "pl", "co.uk", "gr", "pt", "net", "eu"]
MASK_ALPHA = 8  # layer alpha (of 255) from which a pixel counts as covered by the overlay


@lru_cache(maxsize=1)
def font_files() -> tuple[str, ...]:
    """TrueType fonts found here: matplotlib's (DejaVu, STIX) and the system's."""
    found: list[str] = []
    try:
        import matplotlib

        found += sorted(glob.glob(os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "fonts", "ttf", "DejaVu*.ttf")))
    except ImportError:
        pass
    for folder in ("/usr/share/fonts/truetype", "/usr/share/fonts"):
        found += sorted(glob.glob(os.path.join(folder, "**", "*.ttf"), recursive=True))
    # DejaVuSerifDisplay and the math and symbol fonts hold few letters: text in them draws nothing.
    return tuple(dict.fromkeys(f for f in found if not any(w in os.path.basename(f) for w in ("Math", "Symbol", "Display"))))


def font(rng: random.Random, px: int) -> ImageFont.FreeTypeFont:
    files = font_files()
    px = max(6, int(px))
    if files and rng.random() < 0.9:
        return ImageFont.truetype(rng.choice(files), px)
    return ImageFont.load_default(size=px)


def word(rng: random.Random) -> str:
    if rng.random() < 0.4:
        return rng.choice(WORDS)
    alphabet = rng.choices([LATIN, LATIN + ACCENTED, CYRILLIC, GREEK], weights=[5, 2, 2, 1])[0]
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(3, 10)))


def phrase(rng: random.Random) -> str:
    """An agency's mark: a name, a URL, a phone number, a copyright line or a board's acronym."""
    w = word(rng)
    kind = rng.random()
    if kind < 0.2:
        return "".join(rng.choice(LATIN.upper()) for _ in range(rng.randint(3, 6))) + rng.choice(["", "MLS", " MLS", ", INC"])
    if kind < 0.35:
        return f"www.{word(rng).replace(' ', '')}.{rng.choice(TLDS)}"
    if kind < 0.5:
        return rng.choice(["+34 ", "+7 ", "+49 ", "+39 ", "(", "+33 ", "+48 ", ""]) + " ".join(
            "".join(rng.choice("0123456789") for _ in range(rng.randint(2, 4))) for _ in range(rng.randint(2, 4)))
    if kind < 0.62:
        return f"\u00a9 {rng.randint(2005, 2026)} {word(rng).upper()}"
    styled = w.upper() if rng.random() < 0.4 else w.title()
    if rng.random() < 0.5:
        styled += " " + word(rng).title()
    return styled


def _colour(rng: random.Random) -> tuple[int, int, int]:
    r = rng.random()
    if r < 0.45:
        return (255, 255, 255)
    if r < 0.65:
        g = rng.randint(0, 90)
        return (g, g, g)
    if r < 0.8:
        g = rng.randint(120, 220)
        return (g, g, g)
    return tuple(rng.randint(0, 255) for _ in range(3))  # type: ignore[return-value]


def _text_layer(rng: random.Random, text: str, px: int, colour, outline: bool, shadow: bool) -> Image.Image:
    px = max(6, int(px))
    f = font(rng, px)
    x0, y0, x1, y1 = (int(v) for v in f.getbbox(text))
    pad = max(2, px // 6)
    layer = Image.new("RGBA", (x1 - x0 + 2 * pad + 2, y1 - y0 + 2 * pad + 2), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    at = (pad - x0, pad - y0)
    if shadow:
        d.text((at[0] + max(1, px // 12), at[1] + max(1, px // 12)), text, font=f, fill=(0, 0, 0, 160))
    kw = {"stroke_width": max(1, px // 14), "stroke_fill": (0, 0, 0, 255) if sum(colour) > 380 else (255, 255, 255, 255)} if outline else {}
    d.text(at, text, font=f, fill=colour + (255,), **kw)
    return layer


def _logo_layer(rng: random.Random, px: int, colour) -> Image.Image:
    """A drawn emblem (px tall) with a name beside or under it."""
    s = max(8, px)
    emblem = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    d = ImageDraw.Draw(emblem)
    fill = colour + (255,)
    w = max(1, s // 12)
    shape = rng.randrange(4)
    if shape == 0:  # a house: roof and walls
        d.polygon([(s * 0.1, s * 0.5), (s * 0.5, s * 0.1), (s * 0.9, s * 0.5)], outline=fill, width=w)
        d.rectangle((s * 0.22, s * 0.5, s * 0.78, s * 0.92), outline=fill, width=w)
    elif shape == 1:
        d.ellipse((w, w, s - w, s - w), outline=fill, width=w)
        d.text((s * 0.28, s * 0.2), rng.choice(LATIN.upper()), font=font(rng, s * 0.55), fill=fill)
    elif shape == 2:
        d.rounded_rectangle((w, w, s - w, s - w), radius=s // 5, fill=fill)
        d.text((s * 0.2, s * 0.15), "".join(rng.choice(LATIN.upper()) for _ in range(2)), font=font(rng, s * 0.5),
               fill=(0, 0, 0, 0) if rng.random() < 0.5 else (255, 255, 255, 255))
    else:  # palm or tree: trunk and fronds
        d.line((s * 0.5, s * 0.95, s * 0.55, s * 0.35), fill=fill, width=w * 2)
        for a in range(0, 360, 60):
            d.line((s * 0.55, s * 0.35, s * 0.55 + s * 0.4 * math.cos(math.radians(a)),
                    s * 0.35 + s * 0.25 * math.sin(math.radians(a))), fill=fill, width=w)
    name = _text_layer(rng, phrase(rng), max(6, int(s * rng.uniform(0.25, 0.5))), colour, False, False)
    if rng.random() < 0.5:  # name under the emblem
        out = Image.new("RGBA", (max(s, name.width), s + name.height), (0, 0, 0, 0))
        out.alpha_composite(emblem, ((out.width - s) // 2, 0))
        out.alpha_composite(name, ((out.width - name.width) // 2, s))
    else:
        out = Image.new("RGBA", (s + name.width, max(s, name.height)), (0, 0, 0, 0))
        out.alpha_composite(emblem, (0, (out.height - s) // 2))
        out.alpha_composite(name, (s, (out.height - name.height) // 2))
    return out


def _place_in_corner(rng: random.Random, canvas: Image.Image, layer: Image.Image, margin_max: float = 0.04) -> None:
    W, H = canvas.size
    if layer.width > W or layer.height > H:
        layer.thumbnail((W, H))
    mx, my = int(W * rng.uniform(0, margin_max)), int(H * rng.uniform(0, margin_max))
    spot = rng.choices(["br", "bl", "tl", "tr", "bc", "tc"], weights=[40, 18, 20, 10, 8, 4])[0]
    x = {"l": mx, "r": W - layer.width - mx, "c": (W - layer.width) // 2}[spot[1]]
    y = my if spot[0] == "t" else H - layer.height - my
    canvas.alpha_composite(layer, (max(0, x), max(0, y)))


def _with_opacity(layer: Image.Image, opacity: float) -> Image.Image:
    a = np.asarray(layer.getchannel("A"), dtype=np.float32) * opacity
    out = layer.copy()
    out.putalpha(Image.fromarray(a.clip(0, 255).astype(np.uint8)))
    return out


def overlay(rng: random.Random, size: tuple[int, int], kind: str | None = None) -> tuple[Image.Image, str]:
    """A transparent RGBA layer of `size` with one watermark drawn on it (full strength: the caller
    applies the opacity), and its kind."""
    W, H = size
    short = min(W, H)
    kind = kind or rng.choices(list(KINDS), weights=list(KINDS.values()))[0]
    canvas = Image.new("RGBA", size, (0, 0, 0, 0))
    colour = _colour(rng)
    if kind == "corner":
        layer = _text_layer(rng, phrase(rng), short * rng.uniform(0.02, 0.07), colour, rng.random() < 0.2, rng.random() < 0.25)
        _place_in_corner(rng, canvas, layer)
    elif kind == "stamp":
        text = _text_layer(rng, phrase(rng), short * rng.uniform(0.025, 0.06), colour if sum(colour) > 300 else (255, 200, 0), False, False)
        box = Image.new("RGBA", text.size, tuple(rng.randint(0, 80) for _ in range(3)) + (rng.randint(150, 255),))
        box.alpha_composite(text)
        _place_in_corner(rng, canvas, box, 0.01)
    elif kind == "date":
        stamp = f"{rng.randint(1, 12)}/{rng.randint(1, 28)}/{rng.randint(2005, 2026)}" if rng.random() < 0.6 else \
            f"{rng.randint(2005, 2026)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        layer = _text_layer(rng, stamp, short * rng.uniform(0.03, 0.06), rng.choice([(255, 140, 0), (255, 200, 40), (255, 90, 0)]), False, False)
        canvas.alpha_composite(layer, (max(0, W - layer.width - int(W * 0.03)), max(0, H - layer.height - int(H * 0.03))))
    elif kind == "logo":
        layer = _logo_layer(rng, int(short * rng.uniform(0.06, 0.2)), colour)
        if rng.random() < 0.3:  # a large emblem in the middle
            layer = _logo_layer(rng, int(short * rng.uniform(0.2, 0.45)), colour)
            layer.thumbnail((W, H))
            canvas.alpha_composite(layer, ((W - layer.width) // 2, (H - layer.height) // 2))
        else:
            _place_in_corner(rng, canvas, layer)
    elif kind == "banner":
        layer = _text_layer(rng, phrase(rng), short * rng.uniform(0.07, 0.2), colour, rng.random() < 0.2, False)
        if rng.random() < 0.3:
            layer = layer.rotate(rng.uniform(-35, 35), expand=True, resample=Image.BICUBIC)
        layer.thumbnail((int(W * 0.95), int(H * 0.95)))
        canvas.alpha_composite(layer, (rng.randint(0, W - layer.width), int(rng.uniform(0.2, 0.8) * (H - layer.height))))
    elif kind == "tiled":
        tile = _text_layer(rng, phrase(rng), short * rng.uniform(0.04, 0.1), colour, False, False)
        tile = tile.rotate(rng.choice([-1, 1]) * rng.uniform(20, 45), expand=True, resample=Image.BICUBIC)
        step_x, step_y = max(8, int(tile.width * rng.uniform(1.0, 1.8))), max(8, int(tile.height * rng.uniform(0.8, 1.5)))
        wide = Image.new("RGBA", (W + 2 * tile.width, H + 2 * tile.height), (0, 0, 0, 0))
        for row, y in enumerate(range(0, wide.height - tile.height, step_y)):
            for x in range((row % 2) * step_x // 2, wide.width - tile.width, step_x):
                wide.alpha_composite(tile, (x, y))
        canvas = wide.crop((tile.width, tile.height, tile.width + W, tile.height + H))
    else:  # strip
        text = "   ".join(phrase(rng) for _ in range(rng.randint(1, 3)))
        layer = _text_layer(rng, text, short * rng.uniform(0.03, 0.06), colour if sum(colour) > 300 else (255, 255, 255), False, False)
        band = Image.new("RGBA", (W, layer.height), (0, 0, 0, rng.randint(0, 170)))
        band.alpha_composite(layer.crop((0, 0, min(W, layer.width), layer.height)), (max(0, (W - layer.width) // 2), 0))
        canvas.alpha_composite(band, (0, 0 if rng.random() < 0.25 else H - band.height))
    return canvas, kind


@dataclass
class Sample:
    image: Image.Image  # RGB at the network's size
    mask: np.ndarray  # bool (H, W): pixels the overlay covers (all False for a clean sample)
    kind: str  # the overlay's kind, or "clean"
    opacity: float


def make_sample(photo: Image.Image, rng: random.Random, side: int, marked: bool, kind: str | None = None,
                opacity_range: tuple[float, float] = (0.1, 1.0)) -> Sample:
    """A training sample from a clean photo: enlarged by a random factor (both classes), the overlay
    drawn at that size when `marked`, JPEG re-encoded, and reduced to a short side of `side`."""
    photo = photo.convert("RGB")
    scale = rng.uniform(1.0, 2.5) * side / min(photo.size)
    big = photo.resize((max(side, round(photo.width * scale)), max(side, round(photo.height * scale))), Image.BICUBIC)
    mask_img = None
    kind_name, opacity = "clean", 0.0
    if marked:
        layer, kind_name = overlay(rng, big.size, kind)
        opacity = rng.uniform(*opacity_range) if kind_name != "tiled" else rng.uniform(opacity_range[0], min(0.5, opacity_range[1]))
        mask_img = layer.getchannel("A").point(lambda a: 255 if a >= MASK_ALPHA else 0)
        if rng.random() < 0.15:
            layer = layer.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
        rgba = big.convert("RGBA")
        rgba.alpha_composite(_with_opacity(layer, opacity))
        big = rgba.convert("RGB")
    if rng.random() < 0.12:
        big = big.convert("L").convert("RGB")
    if rng.random() < 0.3:
        f = rng.uniform(0.7, 1.3)
        big = Image.eval(big, lambda v: min(255, int(v * f)))
    buf = io.BytesIO()
    big.save(buf, "JPEG", quality=rng.randint(55, 95))
    buf.seek(0)
    small_size = (round(big.width * side / min(big.size)), round(big.height * side / min(big.size)))
    image = Image.open(buf).convert("RGB").resize(small_size, Image.BILINEAR)
    mask = np.zeros((small_size[1], small_size[0]), bool) if mask_img is None else \
        np.asarray(mask_img.resize(small_size, Image.BILINEAR)) > 0
    return Sample(image, mask, kind_name, opacity)
