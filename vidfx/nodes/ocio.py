"""OpenColorIO colour management: the ``ocio`` node converts pictures between the colour spaces of
an OCIO config (ACES, camera log curves, display encodings) or through a display/view, with
OCIO's own CPU processor. See docs/colour.md."""

from __future__ import annotations

import difflib
import os
from concurrent.futures import ThreadPoolExecutor

import PyOpenColorIO as OCIO
import torch

from ..core.errors import MediaError, ParamError
from ..core.frame import ClipInfo, ColourTags, Frame
from ..core.node import Node
from ..core.params import Param

DEFAULT_CONFIG = "ocio://studio-config-latest"

# FFmpeg's tags for the parts of a Color Interop Forum ID ("<transfer>_<primaries>_<scene|display>",
# e.g. "srgb_rec709_display"); the parts not listed have no FFmpeg name (log curves, ACES gamuts).
TRANSFER_TAGS = {
    "lin": "linear",
    "srgb": "iec61966-2-1",
    "g22": "gamma22",
    "g28": "gamma28",
    "g24": "bt709",  # BT.1886 display gamma, tagged bt709 as video is (FFmpeg has no separate tag)
    "itu709": "bt709",
    "pq": "smpte2084",
    "hlg": "arib-std-b67",
}
PRIMARIES_TAGS = {
    "rec709": "bt709",
    "rec2020": "bt2020",
    "p3d65": "smpte432",
}


def config_path(config: str) -> str:
    """The config a node uses: ``config`` when given, else ``$OCIO``, else the built-in studio config."""
    return config or os.environ.get("OCIO") or DEFAULT_CONFIG


def load_config(config: str, owner: str) -> OCIO.Config:
    """Load the OCIO config named by ``config`` (see ``config_path``): a file path or ``ocio://<built-in>``.

    A built-in name OCIO does not know raises ParamError; a file that is missing or does not
    parse raises MediaError naming it (and ``$OCIO`` when that is where it came from).
    """
    path = config_path(config)
    try:
        return OCIO.Config.CreateFromFile(path)
    except (OCIO.Exception, OCIO.ExceptionMissingFile) as e:
        reason = " ".join(str(e).split())
        if path.startswith("ocio://"):
            raise ParamError(
                f"{owner}.config: {reason} Built-in configs: ocio://default, ocio://cg-config-latest, "
                f"ocio://studio-config-latest, " + ", ".join(f"ocio://{n}" for n in OCIO.BuiltinConfigRegistry())
            ) from None
        where = "config" if config else "$OCIO"
        raise MediaError(f"{owner}.{where}: cannot load the OCIO config {path}: {reason}") from None


def close_matches(name: str, choices: dict[str, str]) -> list[str]:
    """Up to five canonical names whose spelling (``choices``: lower-case name or alias -> canonical
    name) contains every word of ``name`` or is close to it, ignoring case."""
    key = name.lower()
    found = [canonical for spelling, canonical in choices.items() if all(w in spelling for w in key.split())]
    found += [choices[s] for s in difflib.get_close_matches(key, list(choices), n=5, cutoff=0.6)]
    return list(dict.fromkeys(found))[:5]


def _unknown(owner: str, what: str, name: str, choices: dict[str, str], where: str) -> ParamError:
    """A one-line error for an unknown name: its close matches, or every valid name when none is close."""
    matches = close_matches(name, choices)
    if matches:
        hint = "close matches: " + ", ".join(repr(m) for m in matches)
    else:
        hint = "valid: " + ", ".join(repr(m) for m in dict.fromkeys(choices.values()))
    return ParamError(f"{owner}: unknown {what} {name!r} in {where}; {hint}")


def config_label(config: OCIO.Config, path: str) -> str:
    """How errors name a config: its path and, when it has one, its own name."""
    name = config.getName()
    return f"{path} ({name})" if name and name not in path else path


def colour_space_name(config: OCIO.Config, name: str, owner: str, where: str = "the OCIO config") -> str:
    """The config's own name for a colour space given by name, alias or role, in any case.

    Raises ParamError listing close matches when the config has no such colour space.
    """
    space = config.getColorSpace(name)
    if space is not None:
        return str(space.getName())
    choices: dict[str, str] = {}
    for cs in config.getColorSpaces(OCIO.SEARCH_REFERENCE_SPACE_ALL, OCIO.COLORSPACE_ALL):
        choices[cs.getName().lower()] = cs.getName()
        for alias in cs.getAliases():
            choices.setdefault(alias.lower(), cs.getName())
    raise _unknown(owner, "colour space", name, choices, where)


def _pick(owner: str, what: str, name: str, names: list[str], where: str) -> str:
    """``name`` as spelled in ``names`` (case-insensitive), or a ParamError listing close matches."""
    choices = {n.lower(): n for n in names}
    if name.lower() in choices:
        return choices[name.lower()]
    raise _unknown(owner, what, name, choices, where)


def display_colour_space(config: OCIO.Config, display: str, view: str) -> str:
    """The colour space a display/view's pictures are in (the display's own for shared views)."""
    space = config.getDisplayViewColorSpaceName(display, view)
    return display if space == OCIO.OCIO_VIEW_USE_DISPLAY_NAME else str(space)


def is_linear(config: OCIO.Config, space: str) -> bool:
    """Whether a colour space holds linear light (scene- or display-referred)."""
    return bool(
        config.isColorSpaceLinear(space, OCIO.REFERENCE_SPACE_SCENE)
        or config.isColorSpaceLinear(space, OCIO.REFERENCE_SPACE_DISPLAY)
    )


def ffmpeg_tags(config: OCIO.Config, space: str) -> tuple[str | None, str | None]:
    """FFmpeg's (primaries, transfer) tags for a colour space, where a clear name exists.

    Read from the colour space's Color Interop Forum ID (``lin_rec709_scene`` -> bt709, linear);
    a colour space without one gets ``linear`` when it is linear and no primaries tag.
    """
    interop = str(config.getColorSpace(space).getInteropID() or "").removeprefix("ocio:")
    parts = interop.split("_")
    if len(parts) == 3:
        return PRIMARIES_TAGS.get(parts[1]), TRANSFER_TAGS.get(parts[0])
    return None, "linear" if is_linear(config, space) else None


class OCIOTransform(Node):
    """Converts pictures between two colour spaces of an OCIO config, or through a display/view.

    The source colour space is ``source`` or, when that is empty, the clip's declared one
    (``ClipInfo.colour.space``). The output is in ``target``, or in the display's colour space
    for ``display``/``view``. With ``inverse`` the transform runs backwards: the input is in
    ``target`` (or the display/view) and the output in ``source``. Names are checked when the
    node is configured and the OCIO processor is built once then; rendering is thread-safe.

    Frames are (C, H, W) float32: RGB, or RGBA whose alpha is passed through untouched; a
    one-channel (grey) input is converted as R = G = B and comes out as RGB.
    """

    type_name = "ocio"
    description = (
        "OpenColorIO: convert between colour spaces (ACES, camera log, display) or apply a display/view. "
        "Alpha is untouched."
    )
    params = (
        Param(
            "config",
            "str",
            "",
            f"OCIO config: a file or ocio://<built-in> (empty: $OCIO, else {DEFAULT_CONFIG})",
        ),
        Param("source", "str", "", "colour space of the input (empty: the clip's declared colour space)"),
        Param("target", "str", "", "colour space of the output (or give display and view)"),
        Param("display", "str", "", "display of a display/view transform (empty with a view: the default)"),
        Param("view", "str", "", "view of a display/view transform (empty with a display: its default)"),
        Param("look", "str", "", "looks applied in the source, OCIO syntax: 'a, +b, -c'"),
        Param("inverse", "bool", False, "run backwards: input in target or display/view, output in source"),
    )

    def configure(self, inputs: list[ClipInfo], device: torch.device) -> ClipInfo:
        info, p = inputs[0], self.p
        if p.target and (p.display or p.view):
            raise ParamError(f"{self.name}: give target or display/view, not both")
        if not (p.target or p.display or p.view):
            raise ParamError(f"{self.name}: give target (a colour space) or display and view")
        config = load_config(p.config, self.name)
        where = config_label(config, config_path(p.config))
        source = p.source or ("" if p.inverse else info.colour.space or "")
        if not source:
            raise ParamError(
                f"{self.name}.source: inverse needs source, the colour space the output is in"
                if p.inverse
                else f"{self.name}.source: the clip declares no colour space; set source (e.g. 'ARRI LogC4') "
                "or the read's colourspace"
            )
        owner = f"{self.name}.source" if p.source else f"{self.name}.source (the clip's declared colour space)"
        source = colour_space_name(config, source, owner, where)
        looks = self._looks(config, where)
        transform: OCIO.Transform
        if p.target:
            target = colour_space_name(config, p.target, f"{self.name}.target", where)
            if looks:
                transform = OCIO.LookTransform(src=source, dst=target, looks=looks)
            else:
                transform = OCIO.ColorSpaceTransform(src=source, dst=target)
        else:
            displays = list(config.getDisplays())
            display = _pick(f"{self.name}.display", "display", p.display, displays, where) if p.display else ""
            display = display or config.getDefaultDisplay()
            views = list(config.getViews(display))
            view = (
                _pick(f"{self.name}.view", "view", p.view, views, f"display {display!r} of {where}") if p.view else ""
            )
            view = view or config.getDefaultView(display)
            steps: list[OCIO.Transform] = [OCIO.LookTransform(src=source, dst=source, looks=looks)] if looks else []
            steps.append(OCIO.DisplayViewTransform(src=source, display=display, view=view))
            transform = OCIO.GroupTransform(steps)
            target = display_colour_space(config, display, view)
        direction = OCIO.TRANSFORM_DIR_INVERSE if p.inverse else OCIO.TRANSFORM_DIR_FORWARD
        try:
            self.processor = config.getProcessor(transform, direction).getDefaultCPUProcessor()
        except OCIO.Exception as e:
            raise ParamError(f"{self.name}: OCIO cannot build this transform: {' '.join(str(e).split())}") from None
        output_space = source if p.inverse else target
        primaries, transfer = ffmpeg_tags(config, output_space)
        tags = ColourTags(primaries, transfer, info.colour.matrix, info.colour.range, space=output_space)
        # float data in a linear space needs more than 8 bits when it is written
        bit_depth = max(info.bit_depth, 16) if is_linear(config, output_space) else info.bit_depth
        return info.replace(colour=tags, bit_depth=bit_depth, channels=4 if info.channels == 4 else 3)

    def _looks(self, config: OCIO.Config, where: str) -> str:
        """The ``look`` parameter with every look name checked and spelled as in the config."""
        if not self.p.look.strip():
            return ""
        names = [look.getName() for look in config.getLooks()]
        picked = []
        for item in self.p.look.split(","):
            item = item.strip()
            sign = item[0] if item[:1] in "+-" else ""
            picked.append(sign + _pick(f"{self.name}.look", "look", item[len(sign) :].strip(), names, where))
        return ", ".join(picked)

    def render(self, n: int, inputs: list[list[Frame]]) -> Frame:
        frame = inputs[0][0]
        x = frame.data
        if self.processor.isNoOp() and x.shape[0] != 1:
            return frame
        _, height, width = x.shape
        # a copy: OCIO works in place and the input frame may still be cached for other nodes
        rgb = torch.empty((3, height, width), dtype=torch.float32)
        rgb.copy_(x[:3] if x.shape[0] >= 3 else x[:1].expand(3, -1, -1))
        self._apply(rgb)
        out = rgb.to(x.device)
        return frame.with_data(torch.cat([out, x[3:].to(out.dtype)]) if x.shape[0] == 4 else out)

    def _apply(self, rgb: torch.Tensor) -> None:
        """Run the processor in place on (3, H, W) float32 CPU planes.

        Row bands run on PyTorch's intra-op thread count (``OMP_NUM_THREADS``): OCIO's CPU
        processor is single-threaded, and an ACES 2.0 output transform takes seconds per 1080p
        frame on one core.
        """
        _, height, width = rgb.shape
        planes = rgb.numpy()
        bands = max(1, min(torch.get_num_threads(), height // 16))
        rows = [height * i // bands for i in range(bands + 1)]
        descs = [
            OCIO.PlanarImageDesc(planes[0, a:b], planes[1, a:b], planes[2, a:b], width, b - a)
            for a, b in zip(rows[:-1], rows[1:])
        ]
        if len(descs) == 1:
            self.processor.apply(descs[0])
            return
        with ThreadPoolExecutor(len(descs)) as pool:
            list(pool.map(self.processor.apply, descs))
