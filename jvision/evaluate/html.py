"""Building blocks of the self-contained HTML pages jvision writes.

`jvision eval`'s report and `jvision audit`'s report are single files: inline
CSS, images as PNG data URIs, nothing fetched, every string from the data
escaped. This module holds what both need: `BASE_CSS` (colours, type,
tables, headline stat cards) goes on every page, and each report adds the
CSS of its own parts.
"""

from __future__ import annotations

import base64
import html
import io
import os

import numpy as np
from PIL import Image

# Thumbnails: small images are upscaled by a whole factor towards
# THUMB_TARGET px on their longest side, never past THUMB_MAX; larger ones are
# shrunk to THUMB_MAX.
THUMB_TARGET = 96
THUMB_MAX = 128

BASE_CSS = """
:root { --fg: #1f2328; --muted: #656d76; --line: #d8dee4; --panel: #f6f8fa;
  --accent: #3a6fd8; --bad: #cf222e; --warn: #b35900; --warn-bg: #fff5e6;
  --ok: #1a7f37; --ok-bg: #e9f7ee;
  --mono: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono",
  monospace; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); background: #fff;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica,
  Arial, sans-serif; }
main { max-width: 1280px; margin: 0 auto; padding: 24px 32px 64px; }
h1 { font-size: 28px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 32px 0 8px; padding-top: 16px;
  border-top: 1px solid var(--line); }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
code { font-family: var(--mono); font-size: 13px; overflow-wrap: anywhere; }
.muted { color: var(--muted); }
.bad { color: var(--bad); }
.stats { display: flex; flex-wrap: wrap; gap: 12px; margin: 16px 0 8px; }
.stat { background: var(--panel); border: 1px solid var(--line);
  border-radius: 8px; padding: 10px 18px; min-width: 150px; }
.stat .v { font-size: 26px; font-weight: 600; line-height: 1.2; }
.stat .k { color: var(--muted); font-size: 13px; }
table { border-collapse: collapse; font-size: 14px; }
th, td { text-align: left; padding: 4px 12px; vertical-align: top;
  border-bottom: 1px solid var(--line); }
thead th { background: var(--panel); font-weight: 600; }
.num { text-align: right; white-space: nowrap;
  font-variant-numeric: tabular-nums; }
figure.card { margin: 0; padding: 8px; border: 1px solid var(--line);
  border-radius: 8px; background: #fff; min-width: 0; }
"""


def escape(value) -> str:
  """`value` as escaped HTML text (quotes included, safe in attributes)."""
  return html.escape(str(value), quote=True)


def page(title: str, body: str, css: str) -> str:
  """A whole HTML document: `body` inside <main>, styled by `BASE_CSS` and
  then `css` (the page's own rules)."""
  return (
    "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
    "<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
    f"<title>{escape(title)}</title>\n<style>{BASE_CSS}{css}</style>\n"
    "</head>\n"
    f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
  )


def write_atomic(path: str, text: str) -> None:
  """Writes `text` to `path` through a temporary file (never half-written)."""
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    f.write(text)
  os.replace(tmp, path)


def thumbnail(image: np.ndarray) -> np.ndarray:
  """A readable thumbnail of `image`, aspect kept.

  Images with a longest side under THUMB_MAX are upscaled by a whole factor
  with nearest-neighbour (28x28 -> 84x84) so pixels stay sharp; larger ones
  are shrunk to THUMB_MAX on their longest side.

  Args:
    image: uint8 [H, W, C], C 1 or 3.

  Returns:
    uint8 [h, w, C].
  """
  height, width = image.shape[:2]
  longest = max(height, width)
  if longest > THUMB_MAX:
    scale = THUMB_MAX / longest
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    shrunk = Image.fromarray(_squeeze(image)).resize(size, Image.LANCZOS)
    return np.asarray(shrunk).reshape(size[1], size[0], image.shape[2])
  factor = max(1, min(round(THUMB_TARGET / longest), THUMB_MAX // longest))
  return image.repeat(factor, axis=0).repeat(factor, axis=1)


def _squeeze(image: np.ndarray) -> np.ndarray:
  """uint8 [H, W, 1] -> [H, W] (PIL mode L); [H, W, 3] unchanged."""
  return image[..., 0] if image.shape[-1] == 1 else image


def png_bytes_uri(data: bytes) -> str:
  """`data:image/png;base64,...` of the bytes of a PNG file."""
  return "data:image/png;base64," + base64.b64encode(data).decode()


def png_data_uri(image: np.ndarray) -> str:
  """`data:image/png;base64,...` of uint8 [H, W, C], C 1 or 3."""
  buffer = io.BytesIO()
  Image.fromarray(_squeeze(image)).save(buffer, format="PNG")
  return png_bytes_uri(buffer.getvalue())
