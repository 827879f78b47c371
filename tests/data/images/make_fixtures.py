#!/usr/bin/env python3
"""Writes the image fixtures of tests/unit/test_image*.c with Pillow, an
encoder independent of kiln and of the tests' own libjpeg/libpng writers.

Run from this folder: python3 make_fixtures.py  (needs: pip install pillow)
The pixel formulas here are repeated in tests/unit/test_image.c, which
checks the decoded pixels against them (PNG exactly, JPEG within a
tolerance). Keep the two in step.
"""
from PIL import Image

W, H = 13, 9          # PNG fixtures: odd sizes
JW, JH = 32, 24       # JPEG fixtures: smooth gradients


def rgb8(x, y):
    return ((x * 19 + y * 7) & 255, (x * 5 + y * 29) & 255, (x * y * 3 + 11) & 255)


def gray16(x, y):
    return (x * 4099 + y * 7919) & 0xFFFF


def palette_color(i):
    return (i * 16, 255 - i * 16, (i * 37) & 255)


def la(x, y):
    return ((x * 20 + y * 9) & 255, (x * y) & 255)


def smooth(x, y):
    return (x * 8, y * 10, 128)


def quadrant(x, y, w, h):
    # Stored image for the EXIF fixture: red top-left, green top-right,
    # blue bottom-left, white bottom-right.
    left, top = x < w // 2, y < h // 2
    if top:
        return (255, 0, 0) if left else (0, 255, 0)
    return (0, 0, 255) if left else (255, 255, 255)


def image(mode, w, h, fn):
    im = Image.new(mode, (w, h))
    im.putdata([fn(x, y) for y in range(h) for x in range(w)])
    return im


image("RGB", W, H, rgb8).save("pil_rgb8.png")
image("I;16", W, H, gray16).save("pil_gray16.png")
image("LA", W, H, la).save("pil_la.png")

pal = image("P", W, H, lambda x, y: (x + 2 * y) % 16)
flat = []
for i in range(16):
    flat += palette_color(i)
pal.putpalette(flat)
pal.save("pil_palette.png", transparency=3)

smooth_rgb = image("RGB", JW, JH, smooth)
smooth_rgb.save("pil_baseline.jpg", quality=95)
smooth_rgb.save("pil_progressive.jpg", quality=95, progressive=True)
image("L", JW, JH, lambda x, y: (x * 4 + y * 5)).save("pil_gray.jpg", quality=95)
image("CMYK", JW, JH, lambda x, y: tuple(255 - v for v in smooth(x, y)) + (0,)).save(
    "pil_cmyk.jpg", quality=95)

exif = Image.Exif()
exif[0x0112] = 6
image("RGB", 24, 16, lambda x, y: quadrant(x, y, 24, 16)).save(
    "pil_exif6.jpg", quality=95, exif=exif.tobytes())

image("P", 4, 4, lambda x, y: x).save("not_an_image.gif")
