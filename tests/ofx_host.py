"""A small OpenFX host in Python (ctypes), for testing and benchmarking the vidfx plugin.

It implements the suites the plugin fetches (property, image effect, parameter, message,
memory, multi-thread), keeps every OFX object as a Python object behind an opaque integer
handle, and drives the actions a real host would: Load, Describe, DescribeInContext,
CreateInstance, GetRegionOfDefinition, GetFramesNeeded, Render, DestroyInstance.
Images are float RGBA numpy arrays stored bottom-up, as OFX lays them out; a source frame
with one channel is an Alpha image (mask clips).

Render scale and pixel aspect ratio work as in OFX: regions of definition are in canonical
coordinates (x stretched by the clip's PAR), images in pixels at the render scale; an input
at render scale s is the source frame resampled by ``OfxHost.resample`` (a box filter for
1/s an integer). Input clips can be declared premultiplied, and message suite V2
(persistent messages) is offered.
"""

from __future__ import annotations

import ctypes
import itertools
import threading
import time as time_module
import traceback
from collections.abc import Callable
from ctypes import CFUNCTYPE, POINTER, Structure, c_char_p, c_double, c_int, c_size_t, c_uint, c_void_p

import numpy as np

OK, FAILED, ERR_UNKNOWN, ERR_UNSUPPORTED, ERR_BAD_HANDLE, ERR_BAD_INDEX, REPLY_DEFAULT = 0, 1, 3, 5, 9, 10, 14


class RectD(Structure):
    _fields_ = [("x1", c_double), ("y1", c_double), ("x2", c_double), ("y2", c_double)]


FETCH_SUITE = CFUNCTYPE(c_void_p, c_void_p, c_char_p, c_int)


class HostStruct(Structure):
    _fields_ = [("host", c_void_p), ("fetchSuite", FETCH_SUITE)]


MAIN_ENTRY = CFUNCTYPE(c_int, c_char_p, c_void_p, c_void_p, c_void_p)


class PluginStruct(Structure):
    _fields_ = [
        ("pluginApi", c_char_p),
        ("apiVersion", c_int),
        ("pluginIdentifier", c_char_p),
        ("pluginVersionMajor", c_uint),
        ("pluginVersionMinor", c_uint),
        ("setHost", CFUNCTYPE(None, POINTER(HostStruct))),
        ("mainEntry", MAIN_ENTRY),
    ]


def _suite(n: int):
    class Suite(Structure):
        _fields_ = [(f"f{i}", c_void_p) for i in range(n)]

    return Suite()


class PropertySet:
    """Named multi-valued properties (strings, ints, doubles, pointers)."""

    def __init__(self, values: dict | None = None):
        self.values: dict[str, list] = {
            k: (list(v) if isinstance(v, (list, tuple)) else [v]) for k, v in (values or {}).items()
        }
        self._keep: dict = {}

    def get(self, name: str, default=None):
        v = self.values.get(name)
        return v[0] if v else default

    def cstr(self, text: str) -> int:
        """Address of a NUL-terminated copy of ``text`` that lives as long as this set."""
        buf = self._keep.get(text)
        if buf is None:
            buf = self._keep[text] = ctypes.create_string_buffer(text.encode())
        return ctypes.addressof(buf)


class Image:
    def __init__(self, array: np.ndarray, props: PropertySet):
        self.array, self.props = array, props


class Clip:
    """An input (with a source of top-down RGBA frames by time) or the output."""

    def __init__(self, name: str, props: PropertySet):
        self.name, self.props = name, props
        self.source: Callable[[float], np.ndarray | None] | None = None
        self.rod = (0.0, 0.0, 0.0, 0.0)
        self.par = 1.0


class Param:
    def __init__(self, kind: str, name: str, props: PropertySet):
        self.kind, self.name, self.props = kind, name, props
        self.value = None  # or a callable of time

    def at(self, time: float):
        v = self.value if self.value is not None else self.props.get("OfxParamPropDefault")
        return v(time) if callable(v) else v


class Effect:
    """A plugin descriptor or instance: properties, clips and parameters."""

    def __init__(self, props: PropertySet):
        self.props = props
        self.clips: dict[str, Clip] = {}
        self.params: dict[str, Param] = {}
        self.param_set_props = PropertySet()
        self.aborted = False


class OfxHost:
    """Loads one plugin binary and implements the host side of the ABI."""

    def __init__(self, binary: str):
        self._handles: dict[int, object] = {}
        self._counter = itertools.count(0x1000)
        self._lock = threading.Lock()
        self._keep: list = []
        self.messages: list[tuple[str, str]] = []
        self.persistent: dict[int, str] = {}  # effect handle -> persistent message (suite V2)
        self._tls = threading.local()  # the render scale of the action running on this thread
        self.callback_errors: list[str] = []
        self.images_out = 0  # images handed to the plugin and not yet released
        self.fetch_log: list[tuple[str, float]] = []
        self.cache_inputs = False  # benchmarks: keep the bottom-up copies of input frames
        self._input_cache: dict = {}
        self.fill_output = True  # tests: output starts as garbage (-1) so gaps show
        self.threads = 2  # what multiThreadNumCPUs answers
        self._output_cache: dict = {}
        self.host_props = PropertySet(
            {
                "OfxPropName": "org.vidfx.testhost",
                "OfxPropLabel": "vidfx test host",
                "OfxImageEffectHostPropIsBackground": 0,
                "OfxImageEffectPropTemporalClipAccess": 1,
                "OfxImageEffectPropSupportsMultiResolution": 1,
                "OfxImageEffectPropSupportedPixelDepths": "OfxBitDepthFloat",
            }
        )
        self._suites = self._make_suites()
        self._host = HostStruct(self.handle(self.host_props), FETCH_SUITE(self._fetch_suite))
        self.lib = ctypes.CDLL(binary)
        self.lib.OfxGetNumberOfPlugins.restype = c_int
        self.lib.OfxGetPlugin.restype = POINTER(PluginStruct)
        self.lib.OfxGetPlugin.argtypes = [c_int]
        self.plugins: dict[str, PluginStruct] = {}
        for i in range(self.lib.OfxGetNumberOfPlugins()):
            p = self.lib.OfxGetPlugin(i).contents
            self.plugins[p.pluginIdentifier.decode()] = p
            p.setHost(ctypes.pointer(self._host))
        self._loaded: set[str] = set()

    # --- handles -------------------------------------------------------------------------
    def handle(self, obj) -> int:
        with self._lock:
            for h, o in self._handles.items():
                if o is obj:
                    return h
            h = next(self._counter)
            self._handles[h] = obj
            return h

    def obj(self, h):
        return self._handles.get(h or 0)

    def _cb(self, ftype, fn):
        def wrapped(*args):
            try:
                return fn(*args)
            except Exception:  # never let an exception cross into C
                self.callback_errors.append(traceback.format_exc())
                return ERR_UNKNOWN

        c = ftype(wrapped)
        self._keep.append(c)
        return ctypes.cast(c, c_void_p).value

    # --- suites ------------------------------------------------------------------------------
    def _make_suites(self) -> dict:
        P, S, INT, D = c_void_p, c_char_p, c_int, c_double
        F = CFUNCTYPE
        props = _suite(18)
        fns = [
            (F(INT, P, S, INT, P), lambda h, n, i, v: self._set(h, n, i, v or 0)),
            (F(INT, P, S, INT, S), lambda h, n, i, v: self._set(h, n, i, (v or b"").decode())),
            (F(INT, P, S, INT, D), lambda h, n, i, v: self._set(h, n, i, float(v))),
            (F(INT, P, S, INT, INT), lambda h, n, i, v: self._set(h, n, i, int(v))),
            (F(INT, P, S, INT, POINTER(P)), lambda h, n, c, v: self._setn(h, n, [v[i] or 0 for i in range(c)])),
            (F(INT, P, S, INT, POINTER(S)), lambda h, n, c, v: self._setn(h, n, [v[i].decode() for i in range(c)])),
            (F(INT, P, S, INT, POINTER(D)), lambda h, n, c, v: self._setn(h, n, [float(v[i]) for i in range(c)])),
            (F(INT, P, S, INT, POINTER(INT)), lambda h, n, c, v: self._setn(h, n, [int(v[i]) for i in range(c)])),
            (F(INT, P, S, INT, POINTER(P)), lambda h, n, i, out: self._get(h, n, i, out, "ptr")),
            (F(INT, P, S, INT, POINTER(P)), lambda h, n, i, out: self._get(h, n, i, out, "str")),
            (F(INT, P, S, INT, POINTER(D)), lambda h, n, i, out: self._get(h, n, i, out, "float")),
            (F(INT, P, S, INT, POINTER(INT)), lambda h, n, i, out: self._get(h, n, i, out, "int")),
            (F(INT, P, S, INT, POINTER(P)), lambda h, n, c, out: self._getn(h, n, c, out, "ptr")),
            (F(INT, P, S, INT, POINTER(P)), lambda h, n, c, out: self._getn(h, n, c, out, "str")),
            (F(INT, P, S, INT, POINTER(D)), lambda h, n, c, out: self._getn(h, n, c, out, "float")),
            (F(INT, P, S, INT, POINTER(INT)), lambda h, n, c, out: self._getn(h, n, c, out, "int")),
            (F(INT, P, S), lambda h, n: OK),
            (F(INT, P, S, POINTER(INT)), self._dimension),
        ]
        for i, (t, fn) in enumerate(fns):
            setattr(props, f"f{i}", self._cb(t, fn))

        fx = _suite(13)
        fx_fns = [
            (F(INT, P, POINTER(P)), lambda e, out: self._out(out, self.handle(self.obj(e).props))),
            (F(INT, P, POINTER(P)), lambda e, out: self._out(out, e)),  # the effect is its own param set
            (F(INT, P, S, POINTER(P)), self._clip_define),
            (F(INT, P, S, POINTER(P), POINTER(P)), self._clip_get_handle),
            (F(INT, P, POINTER(P)), lambda c, out: self._out(out, self.handle(self.obj(c).props))),
            (F(INT, P, D, P, POINTER(P)), self._clip_get_image),
            (F(INT, P), self._clip_release_image),
            (F(INT, P, D, POINTER(RectD)), self._clip_rod),
            (F(INT, P), lambda e: int(self.obj(e).aborted)),
            (F(INT, P, c_size_t, POINTER(P)), lambda *a: ERR_UNSUPPORTED),
            (F(INT, P), lambda *a: ERR_UNSUPPORTED),
            (F(INT, P, POINTER(P)), lambda *a: ERR_UNSUPPORTED),
            (F(INT, P), lambda *a: ERR_UNSUPPORTED),
        ]
        for i, (t, fn) in enumerate(fx_fns):
            setattr(fx, f"f{i}", self._cb(t, fn))

        param = _suite(18)
        unsupported = self._cb(F(INT), lambda: ERR_UNSUPPORTED)
        p_fns = {
            0: (F(INT, P, S, S, POINTER(P)), self._param_define),
            1: (F(INT, P, S, POINTER(P), POINTER(P)), self._param_get_handle),
            2: (F(INT, P, POINTER(P)), lambda s, out: self._out(out, self.handle(self.obj(s).param_set_props))),
            3: (F(INT, P, POINTER(P)), lambda p, out: self._out(out, self.handle(self.obj(p).props))),
            4: (F(INT, P, P), lambda p, out: self._param_value(p, 0.0, out)),
            5: (F(INT, P, D, P), self._param_value),
        }
        for i in range(18):
            setattr(param, f"f{i}", self._cb(*p_fns[i]) if i in p_fns else unsupported)

        message = _suite(1)
        message.f0 = self._cb(F(INT, P, S, S, S, S), self._message)
        message2 = _suite(3)
        message2.f0 = message.f0
        message2.f1 = self._cb(F(INT, P, S, S, S, S), self._set_persistent)
        message2.f2 = self._cb(F(INT, P), self._clear_persistent)
        memory = _suite(2)
        memory.f0 = memory.f1 = unsupported
        threads = _suite(9)
        for i in range(9):
            setattr(threads, f"f{i}", unsupported)
        threads.f0 = self._cb(F(INT, P, c_uint, P), self._multi_thread)
        threads.f1 = self._cb(F(INT, POINTER(c_uint)), lambda out: self._out(out, self.threads))
        return {
            (b"OfxPropertySuite", 1): props,
            (b"OfxImageEffectSuite", 1): fx,
            (b"OfxParameterSuite", 1): param,
            (b"OfxMessageSuite", 1): message,
            (b"OfxMessageSuite", 2): message2,
            (b"OfxMemorySuite", 1): memory,
            (b"OfxMultiThreadSuite", 1): threads,
        }

    def _multi_thread(self, func, count, arg) -> int:
        """Run ``func(i, count, arg)`` on ``count`` threads (ctypes drops the GIL in C)."""
        fn = CFUNCTYPE(c_int, c_uint, c_uint, c_void_p)(func)
        results = [OK] * count

        def run(i):
            results[i] = fn(i, count, arg)

        workers = [threading.Thread(target=run, args=(i,)) for i in range(1, count)]
        for w in workers:
            w.start()
        run(0)
        for w in workers:
            w.join()
        return FAILED if any(r != OK for r in results) else OK

    def _fetch_suite(self, host, name, version):
        suite = self._suites.get((name, version))
        return ctypes.addressof(suite) if suite is not None else None

    @staticmethod
    def _out(ptr, value) -> int:
        if ptr:
            ptr[0] = value
        return OK

    # --- property suite -----------------------------------------------------------------------
    def _props(self, h) -> PropertySet:
        o = self.obj(h)
        if not isinstance(o, PropertySet):
            raise KeyError(f"bad property handle {h}")
        return o

    def _set(self, h, name, index, value) -> int:
        ps = self._props(h)
        vals = ps.values.setdefault(name.decode(), [])
        while len(vals) <= index:
            vals.append(None)
        vals[index] = value
        return OK

    def _setn(self, h, name, values) -> int:
        self._props(h).values[name.decode()] = list(values)
        return OK

    def _convert(self, ps, value, kind):
        if kind == "str":
            return ps.cstr(value if isinstance(value, str) else "")
        if kind == "float":
            return float(value or 0)
        if kind == "int":
            return int(value or 0)
        return value or None

    def _get(self, h, name, index, out, kind) -> int:
        ps = self._props(h)
        vals = ps.values.get(name.decode())
        if vals is None:
            return ERR_UNKNOWN
        if index >= len(vals):
            return ERR_BAD_INDEX
        out[0] = self._convert(ps, vals[index], kind)
        return OK

    def _getn(self, h, name, count, out, kind) -> int:
        ps = self._props(h)
        vals = ps.values.get(name.decode())
        if vals is None:
            return ERR_UNKNOWN
        if count > len(vals):
            return ERR_BAD_INDEX
        for i in range(count):
            out[i] = self._convert(ps, vals[i], kind)
        return OK

    def _dimension(self, h, name, out) -> int:
        vals = self._props(h).values.get(name.decode())
        if vals is None:
            return ERR_UNKNOWN
        out[0] = len(vals)
        return OK

    # --- image effect suite --------------------------------------------------------------------
    def _define(self, table: dict, item, out) -> int:
        """Add a described clip or parameter to ``table`` (by name); answer its property set."""
        table[item.name] = item
        return self._out(out, self.handle(item.props))

    def _get_handle(self, table: dict, name, out, out_props) -> int:
        """Answer the handle (and, if asked, the property set) of a clip or parameter by name."""
        item = table.get(name.decode())
        if item is None:
            return ERR_UNKNOWN
        self._out(out, self.handle(item))
        if out_props:
            out_props[0] = self.handle(item.props)
        return OK

    def _clip_define(self, e, name, out) -> int:
        clip = Clip(name.decode(), PropertySet({"OfxPropName": name.decode()}))
        return self._define(self.obj(e).clips, clip, out)

    def _clip_get_handle(self, e, name, out_clip, out_props) -> int:
        return self._get_handle(self.obj(e).clips, name, out_clip, out_props)

    def _clip_rod(self, c, time, out) -> int:
        clip: Clip = self.obj(c)
        if clip.source is not None:
            frame = clip.source(time)
            if frame is None:
                return FAILED
            clip.rod = (0.0, 0.0, float(frame.shape[1]) * clip.par, float(frame.shape[0]))
        out[0] = RectD(*clip.rod)
        return OK

    @staticmethod
    def resample(frame: np.ndarray, sx: float, sy: float) -> np.ndarray:
        """A (H, W, C) frame at render scale (sx, sy): box-averaged when 1/s is an integer."""
        if (sx, sy) == (1.0, 1.0):
            return frame
        fx, fy = round(1 / sx), round(1 / sy)
        assert abs(fx * sx - 1) < 1e-9 and abs(fy * sy - 1) < 1e-9, "test host: render scale 1/integer only"
        h, w = frame.shape[0] // fy * fy, frame.shape[1] // fx * fx
        f = frame[:h, :w].reshape(h // fy, fy, w // fx, fx, -1)
        return f.mean(axis=(1, 3)).astype(np.float32)

    def _clip_get_image(self, c, time, region, out) -> int:
        clip: Clip = self.obj(c)
        if clip.source is not None:
            frame = clip.source(time)
            if frame is None:
                return FAILED
            self.fetch_log.append((clip.name, time))
            sx, sy = getattr(self._tls, "scale", (1.0, 1.0))
            key = (id(clip), id(frame), sx, sy)  # the same source array: the same flipped copy
            array = self._input_cache.get(key) if self.cache_inputs else None
            if array is None:
                array = np.ascontiguousarray(self.resample(frame, sx, sy)[::-1], dtype=np.float32)  # bottom-up
                if self.cache_inputs:
                    self._input_cache[key] = array
            x1, y1 = 0, 0
        else:
            sx, sy = getattr(self._tls, "scale", (1.0, 1.0))
            r = clip.rod  # canonical -> pixels at the render scale
            x1, y1 = int(np.floor(r[0] / clip.par * sx)), int(np.floor(r[1] * sy))
            x2, y2 = int(np.ceil(r[2] / clip.par * sx - 1e-9)), int(np.ceil(r[3] * sy - 1e-9))
            shape = (y2 - y1, x2 - x1, 4)
            if self.fill_output:
                array = np.full(shape, -1.0, np.float32)
            else:  # like a real host, reuse output memory (benchmarks)
                array = self._output_cache.get(shape)
                if array is None:
                    array = self._output_cache[shape] = np.empty(shape, np.float32)
            clip.last_output = array
            self._tls.last_output = array  # concurrent renders: each thread its own
        h, w, c = array.shape
        props = PropertySet(
            {
                "OfxPropType": "OfxTypeImage",
                "OfxImagePropData": array.ctypes.data,
                "OfxImagePropBounds": [x1, y1, x1 + w, y1 + h],
                "OfxImagePropRegionOfDefinition": [x1, y1, x1 + w, y1 + h],
                "OfxImagePropRowBytes": w * 4 * c,
                "OfxImageEffectPropPixelDepth": "OfxBitDepthFloat",
                "OfxImageEffectPropComponents": "OfxImageComponentAlpha" if c == 1 else "OfxImageComponentRGBA",
                "OfxImagePropPixelAspectRatio": clip.par,
                "OfxImageEffectPropRenderScale": list(getattr(self._tls, "scale", (1.0, 1.0))),
                "OfxPropTime": time,
            }
        )
        props.image = Image(array, props)
        with self._lock:
            self.images_out += 1
        return self._out(out, self.handle(props))

    def _clip_release_image(self, h) -> int:
        with self._lock:
            props = self._handles.pop(h or 0, None)
            if props is None:
                return ERR_BAD_HANDLE
            self.images_out -= 1
        return OK

    # --- parameter suite --------------------------------------------------------------------------
    def _param_define(self, s, kind, name, out) -> int:
        param = Param(kind.decode(), name.decode(), PropertySet({"OfxPropName": name.decode()}))
        return self._define(self.obj(s).params, param, out)

    def _param_get_handle(self, s, name, out, out_props) -> int:
        return self._get_handle(self.obj(s).params, name, out, out_props)

    def _param_value(self, p, time, out) -> int:
        param: Param = self.obj(p)
        v = param.at(time)
        if param.kind in ("OfxParamTypeInteger", "OfxParamTypeBoolean", "OfxParamTypeChoice"):
            c_int.from_address(out).value = int(v or 0)
        elif param.kind == "OfxParamTypeDouble":
            c_double.from_address(out).value = float(v or 0)
        elif param.kind == "OfxParamTypeString":
            c_void_p.from_address(out).value = param.props.cstr(str(v or ""))
        else:
            return ERR_UNSUPPORTED
        return OK

    def _message(self, handle, kind, msg_id, fmt, arg) -> int:
        text = arg.decode() if fmt == b"%s" and arg else (fmt or b"").decode()
        self.messages.append(((kind or b"").decode(), text))
        return OK

    def _set_persistent(self, handle, kind, msg_id, fmt, arg) -> int:
        self.persistent[handle or 0] = arg.decode() if fmt == b"%s" and arg else (fmt or b"").decode()
        return OK

    def _clear_persistent(self, handle) -> int:
        self.persistent.pop(handle or 0, None)
        return OK

    # --- driving the plugin -------------------------------------------------------------------------
    def call(
        self,
        identifier: str,
        action: str,
        handle=None,
        in_args: PropertySet | None = None,
        out_args: PropertySet | None = None,
    ) -> int:
        """Call the plugin's main entry with an action."""
        entry = self.plugins[identifier].mainEntry
        return entry(
            action.encode(),
            handle,
            self.handle(in_args) if in_args else None,
            self.handle(out_args) if out_args else None,
        )

    def describe(self, identifier: str, context: str) -> Effect:
        """Load + Describe (once per plugin) and DescribeInContext; returns the context descriptor."""
        if identifier not in self._loaded:
            assert self.call(identifier, "OfxActionLoad") == OK
            self._loaded.add(identifier)
        desc = Effect(PropertySet({"OfxPropType": "OfxTypeImageEffect"}))
        assert self.call(identifier, "OfxActionDescribe", self.handle(desc)) == OK
        ctx_desc = Effect(PropertySet(dict((k, v) for k, v in desc.props.values.items())))
        ctx_desc.described = desc
        status = self.call(
            identifier,
            "OfxImageEffectActionDescribeInContext",
            self.handle(ctx_desc),
            PropertySet({"OfxImageEffectPropContext": context}),
        )
        assert status == OK, status
        return ctx_desc

    def create_instance(
        self,
        identifier: str,
        context: str,
        sources: dict[str, Callable],
        frame_range: tuple[int, int],
        fps: float = 25.0,
        params: dict | None = None,
        clip_ranges: dict[str, tuple[int, int]] | None = None,
        par: float = 1.0,
        premultiplied: bool = False,
    ) -> Instance:
        """An instance of a plugin in a context, its inputs fed from ``sources``; every clip
        has ``frame_range`` unless ``clip_ranges`` names another. ``par``: the pixel aspect
        ratio of every clip; ``premultiplied``: the inputs' colour is premultiplied by alpha."""
        desc = self.describe(identifier, context)
        inst = Effect(
            PropertySet(
                {
                    "OfxPropType": "OfxTypeImageEffectInstance",
                    "OfxImageEffectPropContext": context,
                    "OfxPropInstanceData": 0,
                }
            )
        )
        for name, dclip in desc.clips.items():
            clip = Clip(name, PropertySet(dict(dclip.props.values)))
            first, last = (clip_ranges or {}).get(name, frame_range)
            clip.props.values.update(
                {
                    "OfxImageEffectPropFrameRate": [fps],
                    "OfxImageEffectPropFrameRange": [float(first), float(last)],
                    "OfxImageEffectPropPixelDepth": ["OfxBitDepthFloat"],
                    "OfxImageEffectPropComponents": ["OfxImageComponentRGBA"],
                    "OfxImageClipPropConnected": [1],
                    "OfxImagePropPixelAspectRatio": [par],
                    "OfxImageEffectPropPreMultiplication": [
                        "OfxImageAlphaPremultiplied" if premultiplied else "OfxImageAlphaUnPremultiplied"
                    ],
                }
            )
            clip.par = par
            clip.source = sources.get(name)
            inst.clips[name] = clip
        for name, dparam in desc.params.items():
            inst.params[name] = Param(dparam.kind, name, PropertySet(dict(dparam.props.values)))
        for name, value in (params or {}).items():
            inst.params[name].value = value
        assert self.call(identifier, "OfxActionCreateInstance", self.handle(inst)) == OK
        return Instance(self, identifier, inst, desc)


class Instance:
    """One created effect instance, with the per-frame actions."""

    def __init__(self, host: OfxHost, identifier: str, effect: Effect, desc: Effect):
        self.host, self.identifier, self.effect, self.desc = host, identifier, effect, desc
        self.handle = host.handle(effect)
        self.last_render_s = 0.0  # wall time of the last Render action alone

    def region_of_definition(self, time: float, scale=(1.0, 1.0)) -> tuple[int, tuple[float, ...]]:
        """The output's RoD in canonical coordinates (the same at every render scale)."""
        out = PropertySet({"OfxImageEffectPropRegionOfDefinition": [0.0, 0.0, 0.0, 0.0]})
        status = self.host.call(
            self.identifier,
            "OfxImageEffectActionGetRegionOfDefinition",
            self.handle,
            PropertySet({"OfxPropTime": float(time), "OfxImageEffectPropRenderScale": list(scale)}),
            out,
        )
        return status, tuple(out.values["OfxImageEffectPropRegionOfDefinition"])

    def clip_preferences(self) -> tuple[int, dict[str, list]]:
        """GetClipPreferences: the status and the out-arguments the plugin set."""
        out = PropertySet()
        status = self.host.call(self.identifier, "OfxImageEffectActionGetClipPreferences", self.handle, None, out)
        return status, dict(out.values)

    def frames_needed(self, time: float) -> tuple[int, dict[str, list[float]]]:
        inputs = [n for n in self.effect.clips if n != "Output"]
        out = PropertySet({f"OfxImageClipPropFrameRange_{n}": [float(time), float(time)] for n in inputs})
        status = self.host.call(
            self.identifier,
            "OfxImageEffectActionGetFramesNeeded",
            self.handle,
            PropertySet({"OfxPropTime": float(time)}),
            out,
        )
        return status, {n: out.values[f"OfxImageClipPropFrameRange_{n}"] for n in inputs}

    def regions_of_interest(self, time: float, window) -> tuple[int, dict[str, list[float]]]:
        inputs = [n for n in self.effect.clips if n != "Output"]
        out = PropertySet({f"OfxImageClipPropRoI_{n}": list(window) for n in inputs})
        status = self.host.call(
            self.identifier,
            "OfxImageEffectActionGetRegionsOfInterest",
            self.handle,
            PropertySet(
                {
                    "OfxPropTime": float(time),
                    "OfxImageEffectPropRenderScale": [1.0, 1.0],
                    "OfxImageEffectPropRegionOfInterest": list(window),
                }
            ),
            out,
        )
        return status, {n: out.values[f"OfxImageClipPropRoI_{n}"] for n in inputs}

    def render(self, time: float, scale=(1.0, 1.0)) -> tuple[int, np.ndarray | None]:
        """GetRegionOfDefinition then Render of the whole output at a render scale; the image
        top-down (H, W, 4), in pixels at that scale."""
        status, rod = self.region_of_definition(time, scale)
        if status == REPLY_DEFAULT:
            rod = self.effect.clips[[n for n in self.effect.clips if n != "Output"][0]].rod
        elif status != OK:
            return status, None
        out_clip = self.effect.clips["Output"]
        out_clip.rod = rod
        out_clip.par = self.effect.clips[[n for n in self.effect.clips if n != "Output"][0]].par
        sx, sy = scale
        window = [
            int(np.floor(rod[0] / out_clip.par * sx)),
            int(np.floor(rod[1] * sy)),
            int(np.ceil(rod[2] / out_clip.par * sx - 1e-9)),
            int(np.ceil(rod[3] * sy - 1e-9)),
        ]
        self.host._tls.scale = (float(sx), float(sy))
        start = time_module.perf_counter()
        status = self.host.call(
            self.identifier,
            "OfxImageEffectActionRender",
            self.handle,
            PropertySet(
                {
                    "OfxPropTime": float(time),
                    "OfxImageEffectPropRenderWindow": window,
                    "OfxImageEffectPropRenderScale": [float(sx), float(sy)],
                    "OfxImageEffectPropFieldToRender": "OfxImageFieldNone",
                    "OfxImageEffectPropSequentialRenderStatus": 0,
                    "OfxImageEffectPropInteractiveRenderStatus": 0,
                }
            ),
        )
        self.last_render_s = time_module.perf_counter() - start
        self.host._tls.scale = (1.0, 1.0)
        if status != OK:
            return status, None
        return status, self.host._tls.last_output[::-1].copy()

    def destroy(self) -> int:
        return self.host.call(self.identifier, "OfxActionDestroyInstance", self.handle)
