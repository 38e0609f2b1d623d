"""VideoReader: stream-decode a video file into lazy frames (PyAV, multithreaded).

Frames come out in decode order = display order, numbered 0.. as FFmpeg decodes them;
each carries the source pts (ClipInfo.time_base) and its duration in ``meta["duration"]``,
so gaps (missing frame slots) and VFR timing pass through to the writer untouched.
Damaged data the decoder conceals (packets it rejects, frames it flags corrupt) is counted
in ``damage`` (or raised as a MediaError with ``strict``), so the ``read`` node can report it.
Pixels are made only when a node asks for ``frame.data`` (YUV->RGB with the stream's own
matrix/range, 16-bit RGB for >8-bit sources, display rotation applied); until then the
decoder's frame rides along in ``frame.native`` so a writer can encode it directly.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator

import av
from av.container import InputContainer

from vidfx.core.errors import MediaError
from vidfx.core.frame import ClipInfo, EndOfStream, Frame

from .convert import av_to_tensor
from .probe import open_input, probe

RECENT_FRAMES = 8  # frames kept for small backward steps without seeking
SEEK_AHEAD = 96  # a frame further ahead than this is reached by seeking, not by decoding every frame


class VideoDecoder:
    """Sequential decoder over one file with cheap forward reads and rare backward seeks.

    ``get(n)`` returns frame ``n`` (a lazy Frame) or raises EndOfStream(length).
    """

    def __init__(self, path: str, threads: int = 0, strict: bool = False):
        self.path = os.fspath(path)
        self.threads = threads
        self.strict = strict
        self.info: ClipInfo | None = None
        self._container: InputContainer | None = None
        self._frames: Iterator[av.VideoFrame] | None = None
        self._next = 0  # index of the frame the iterator yields next
        self._recent: OrderedDict[int, Frame] = OrderedDict()
        self._pts_of: list[int | None] = []  # source pts of every frame decoded so far, by index
        self._packet_pts: list[int] | None = None  # every video packet's pts in display order (for seeks ahead)
        self._packet_index: dict[int, int] = {}  # pts -> display index
        self._length: int | None = None
        self.decode_errors = 0
        self.damage: list[int] = []  # frame index of each damaged packet or concealed frame (first pass only)
        self.cut_short_at: int | None = None  # frames read before the container's data could not be read on

    def open(self) -> ClipInfo:
        """Probe the file and start decoding; returns its ClipInfo (upright size)."""
        self.info = probe(self.path)
        self._restart()
        return self.info

    def close(self) -> None:
        """Release the file."""
        self._frames = None
        if self._container is not None:
            self._container.close()
            self._container = None
        self._recent.clear()

    # --- decoding -------------------------------------------------------------------
    def _restart(self, seek_pts: int | None = None, first_index: int = 0) -> None:
        container = self._container
        if container is None:
            container = self._container = open_input(self.path)
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # frame + slice threads
            stream.codec_context.thread_count = self.threads
        stream = container.streams.video[0]
        if seek_pts is not None:
            container.seek(seek_pts, stream=stream, backward=True, any_frame=False)
        stream.codec_context.flush_buffers()
        self._frames = self._decode(container, stream)
        self._next = first_index

    def _decode(self, container: InputContainer, stream: av.VideoStream) -> Iterator[av.VideoFrame]:
        try:
            for packet in container.demux(stream):
                try:
                    yield from packet.decode()
                except av.InvalidDataError:
                    self.decode_errors += 1  # a damaged packet: skip it, as ffmpeg does
                    self._damaged(self._next, "the decoder rejected a damaged packet")
        except av.FFmpegError as exc:
            # truncated or damaged container: flush what the decoder still holds
            if self._next >= len(self._pts_of) and self.cut_short_at is None:
                if self.strict:
                    raise MediaError(
                        f"{self.path}: data cannot be read after frame {self._next} ({exc.strerror or exc}; strict)"
                    ) from None
                self.cut_short_at = self._next
            try:
                yield from stream.codec_context.decode(None)
            except av.FFmpegError:
                pass

    def _damaged(self, n: int, what: str) -> None:
        """Note damaged data near frame ``n`` (once: not again after a seek back); strict raises."""
        if n < len(self._pts_of):
            return  # decoded again after a seek: counted the first time
        if self.strict:
            raise MediaError(f"{self.path}: damaged data at frame {n}: {what} (strict)")
        self.damage.append(n)

    def _next_decoded(self) -> av.VideoFrame | None:
        """The next frame the decoder gives (None at the end of the stream)."""
        assert self._frames is not None, "decoding starts in open()"
        return next(self._frames, None)

    def _wrap(self, n: int, vf: av.VideoFrame) -> Frame:
        info = self.info
        assert info is not None, "frames are wrapped after open()"
        pts = vf.pts
        if pts is None:
            pts = round(n / info.fps / info.time_base) if info.time_base else n
        meta = {"duration": vf.duration or None, "key_frame": bool(vf.key_frame)}
        rotation = info.rotation
        return Frame(
            index=n,
            pts=pts,
            meta=meta,
            load=lambda: av_to_tensor(vf, info.channels, info.bit_depth, info.colour, rotation),
            native=vf if rotation == 0 else None,
        )

    def _advance(self, vf: av.VideoFrame | None = None) -> Frame:
        """Wrap the next decoded frame (or ``vf``, already taken from the iterator)."""
        if vf is None:
            vf = self._next_decoded()
        if vf is None:
            self._length = self._next
            raise EndOfStream(self._length)
        n = self._next
        self._next += 1
        if vf.is_corrupt:
            self._damaged(n, "the decoder concealed corrupt data")
        if n == len(self._pts_of):
            self._pts_of.append(vf.pts)
        frame = self._wrap(n, vf)
        self._recent[n] = frame
        while len(self._recent) > RECENT_FRAMES:
            self._recent.popitem(last=False)
        return frame

    def get(self, n: int) -> Frame:
        """Frame ``n``; EndOfStream(length) if the stream has fewer frames."""
        if self.info is None:
            self.open()
        if n < 0:
            raise IndexError(f"{self.path}: negative frame index {n}")
        if self._length is not None and n >= self._length:
            raise EndOfStream(self._length)
        if n in self._recent:
            return self._recent[n]
        if n < self._next:
            self._seek_back(n)
            if n in self._recent:
                return self._recent[n]
        elif n > self._next + SEEK_AHEAD:
            self._seek_ahead(n)
        while True:
            frame = self._advance()
            if frame.index == n:
                return frame

    def _seek_ahead(self, n: int) -> None:
        """Jump towards frame ``n`` far ahead (a segment of a clip rendered elsewhere starts
        there): seek to the keyframe before it, found from the packets' timestamps, and
        continue from the frame the decoder lands on. Anything unexpected (no timestamps,
        damaged data, a landing that cannot be placed) keeps the plain forward decode."""
        order = self._packet_order()
        if order is None or n >= len(order) or self.decode_errors or len(self._pts_of) != self._next:
            return
        self._restart(seek_pts=order[n])
        vf = self._next_decoded()
        landed = self._packet_index.get(vf.pts) if vf is not None and vf.pts is not None else None
        if landed is None or landed > n or landed < self._next:
            self._resync()
            return
        self._pts_of.extend(order[len(self._pts_of) : landed])  # the frames jumped over, as the index knows them
        self._next = landed
        self._advance(vf)

    def _resync(self) -> None:
        """After a failed jump: decode from the start again up to where we were."""
        where = self._next
        self.close()
        self._restart()
        while self._next < where:
            self._advance()

    def _packet_order(self) -> list[int] | None:
        """The video packets' pts in display order (a demux-only pass, no decoding), or None
        when some packet has none."""
        if self._packet_pts is None:
            with open_input(self.path) as container:
                stream = container.streams.video[0]
                pts = [p.pts for p in container.demux(stream) if p.size]
            if any(p is None for p in pts) or len(set(pts)) != len(pts):
                return None
            self._packet_pts = sorted(p for p in pts if p is not None)
            self._packet_index = {p: i for i, p in enumerate(self._packet_pts)}
        return self._packet_pts

    def _seek_back(self, n: int) -> None:
        """Re-position so that the next frames decoded lead to frame ``n``.

        Seeks to the keyframe before ``n``'s pts and recognises where it landed by the
        pts recorded on the first pass; if that fails, decodes again from the start.
        """
        index_of = {pts: i for i, pts in enumerate(self._pts_of) if pts is not None}
        self._recent.clear()
        if n < len(self._pts_of) and len(index_of) == len(self._pts_of):
            self._restart(seek_pts=self._pts_of[n])
            vf = self._next_decoded()
            i = index_of.get(vf.pts) if vf is not None and vf.pts is not None else None
            if i is not None and i <= n:
                self._next = i
                self._advance(vf)
                return
        self.close()
        self._restart()


def open_video(path: str, threads: int = 0) -> VideoDecoder:
    """A started VideoDecoder for ``path`` (MediaError if it cannot be read)."""
    decoder = VideoDecoder(path, threads)
    decoder.open()
    return decoder
