"""A1111's infotext grammar, as modules/infotext_utils.py `parse_generation_parameters`
reads it (the regular expression, the quoting and the prompt / negative prompt split),
written out for the tests: the `parameters` text of our PNGs must read back through it."""

from __future__ import annotations

import json
import re

# A1111's re_param_code: a key of word characters, spaces, '-' and '/', then a JSON
# string or anything up to the next comma.
PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
IMAGE_SIZE = re.compile(r"^(\d+)x(\d+)$")


def unquote(text: str) -> str:
    if len(text) == 0 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        return json.loads(text)
    except Exception:
        return text


def parse(text: str) -> dict:
    """{"Prompt", "Negative prompt", field: value, "Size-1", "Size-2", ...}, with A1111's
    defaults for missing fields that concern us (`Clip skip` 1)."""
    result = {}
    prompt, negative, in_negative = "", "", False
    *lines, last = text.strip().split("\n")
    if len(PARAM.findall(last)) < 3:
        lines.append(last)
        last = ""
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[16:].strip()
        if in_negative:
            negative += ("" if negative == "" else "\n") + line
        else:
            prompt += ("" if prompt == "" else "\n") + line
    result["Prompt"], result["Negative prompt"] = prompt, negative
    for key, value in PARAM.findall(last):
        if value[:1] == '"' and value[-1:] == '"':
            value = unquote(value)
        size = IMAGE_SIZE.match(value)
        if size:
            result[f"{key}-1"], result[f"{key}-2"] = size.group(1), size.group(2)
        else:
            result[key] = value
    result.setdefault("Clip skip", "1")  # A1111: a missing Clip skip means 1
    return result
