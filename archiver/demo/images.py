"""The sample outlet's pictures, drawn as PNGs in code (the package carries no image files and
needs no image library): a harbour at dawn for its articles, a wave strip for its masthead."""

from __future__ import annotations

import math
import struct
import zlib
from functools import lru_cache

RGB = tuple[int, int, int]


def png(width: int, rows: list[bytes]) -> bytes:
    """An 8-bit RGB PNG of the given rows (each `width` * 3 bytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + row for row in rows)
    header = struct.pack(">IIBBBBB", width, len(rows), 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    t = min(max(t, 0.0), 1.0)
    return (round(a[0] + (b[0] - a[0]) * t), round(a[1] + (b[1] - a[1]) * t), round(a[2] + (b[2] - a[2]) * t))


@lru_cache(maxsize=1)
def harbour_photo(width: int = 640, height: int = 360) -> bytes:
    """A harbour at dawn: sky, sun, a lighthouse on a pier, a boat, the sea catching the light."""
    horizon = int(height * 0.62)
    sun_x, sun_y, sun_r = int(width * 0.68), int(horizon - height * 0.10), height // 11
    sky_top, sky_low, sun = (58, 84, 130), (246, 196, 148), (255, 236, 190)
    sea_top, sea_low, dark = (70, 92, 128), (22, 40, 68), (28, 30, 38)
    tower_x, tower_w = int(width * 0.18), max(6, width // 40)
    pier_y = horizon - height // 40
    boat_x, boat_w, boat_y = int(width * 0.42), width // 8, horizon + height // 12
    rows: list[bytes] = []
    for y in range(height):
        if y < horizon:
            row = bytearray(bytes(_mix(sky_top, sky_low, (y / horizon) ** 1.6)) * width)
            dy = y - sun_y
            if abs(dy) < sun_r:
                half = int(math.sqrt(sun_r * sun_r - dy * dy))
                lo, hi = max(sun_x - half, 0), min(sun_x + half, width)
                row[lo * 3:hi * 3] = bytes(sun) * (hi - lo)
            # the lighthouse narrows towards its lamp, standing on a pier that meets the horizon
            top = horizon - int(height * 0.42)
            if y >= top:
                taper = int(tower_w * (0.6 + 0.4 * (y - top) / (horizon - top)))
                lamp = top + height // 30 > y
                colour = (255, 214, 120) if lamp else dark
                row[(tower_x - taper) * 3:(tower_x + taper) * 3] = bytes(colour) * (2 * taper)
            if y >= pier_y:
                row[0:int(width * 0.34) * 3] = bytes(dark) * int(width * 0.34)
        else:
            depth = (y - horizon) / (height - horizon)
            base = _mix(sea_top, sea_low, depth ** 0.7)
            row = bytearray(bytes(base) * width)
            # the sun's path on the water: short bright dashes that widen towards the viewer
            spread = int(sun_r * (0.8 + 3 * depth))
            glint = _mix(sun, base, 0.15 + 0.6 * depth)
            for x in range(max(sun_x - spread, 0), min(sun_x + spread, width)):
                if math.sin(x * 0.35 + y * 1.7) + math.sin(y * 0.9 - x * 0.05) > 1.1:
                    row[x * 3:x * 3 + 3] = bytes(glint)
            for x in range(0, width, 3):  # a faint ripple over the whole sea
                if math.sin(x * 0.08 + y * 0.6) > 0.96:
                    row[x * 3:x * 3 + 3] = bytes(_mix(base, sky_low, 0.25))
        if boat_y - height // 25 <= y < boat_y:  # a hull, and its mast above it
            k = (boat_y - y) / (height // 25)
            lo, hi = boat_x - int(boat_w * (0.5 - 0.15 * (1 - k))), boat_x + int(boat_w * (0.5 - 0.15 * (1 - k)))
            row[lo * 3:hi * 3] = bytes(dark) * (hi - lo)
        elif boat_y - height // 5 <= y < boat_y - height // 25:
            row[boat_x * 3:(boat_x + 2) * 3] = bytes(dark) * 2
        rows.append(bytes(row))
    return png(width, rows)


@lru_cache(maxsize=1)
def wave_strip(width: int = 48, height: int = 10) -> bytes:
    """A tile of light waves on the masthead's blue, repeated along its bottom edge."""
    navy, foam = (18, 53, 91), (52, 96, 140)
    rows = []
    for y in range(height):
        row = bytearray(bytes(navy) * width)
        for x in range(width):
            if abs(y - (height / 2 + (height / 3) * math.sin(2 * math.pi * x / width))) < 1.2:
                row[x * 3:x * 3 + 3] = bytes(foam)
        rows.append(bytes(row))
    return png(width, rows)
