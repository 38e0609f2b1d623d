"""Audio for a written clip: stream copy or sample-accurate cut + re-encode, interleaved
with the video as it is written.

Output time 0 is source time ``AudioRef.start`` (the instant of the first output frame).
Copy mode shifts the source packets by ``start`` and drops those wholly outside the
window; the one straddling the start gets a negative timestamp, which MP4/MOV store as an
edit list, so players start at exactly the right sample. (``audio=auto`` copies only into
MP4/MOV; an explicit ``audio=copy`` into Matroska stays in sync but the muxer shifts all
streams by the pre-roll, so the video starts a few ms late.) Re-encode mode decodes, cuts at
sample precision, and encodes AAC (or PCM) with timestamps counted in samples from 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from fractions import Fraction
from typing import Literal

import av
from av.audio.stream import AudioStream
from av.container import InputContainer, OutputContainer
from av.packet import Packet

from vidfx.core.errors import MediaError
from vidfx.core.frame import AudioRef

from .probe import open_input, time_base

# The audio encoders a clip is re-encoded with.
AudioEncoder = Literal["aac", "pcm_s16le"]

# Which audio codecs a container can take as a stream copy.
COPY_OK = {
    "mp4": {"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"},
    "mov": {"aac", "mp3", "ac3", "eac3", "alac", "pcm_s16le", "pcm_s24le", "pcm_s16be", "pcm_s24be", "pcm_f32le"},
    "matroska": None,  # anything
}
# What to re-encode to when copying is not possible.
ENCODE_TO: dict[str, AudioEncoder] = {
    "mp4": "aac",
    "mov": "aac",
    "matroska": "aac",
    "mxf": "pcm_s16le",
    "avi": "pcm_s16le",
}
# The encoder an explicit ``audio=`` mode asks for.
MODE_ENCODER: dict[str, AudioEncoder] = {"aac": "aac", "pcm": "pcm_s16le"}


def container_kind(container: OutputContainer) -> str:
    """A short name for the output format family (``mp4``, ``mov``, ``matroska``...)."""
    name = container.format.name
    for kind in ("mp4", "mov", "matroska", "mxf", "avi"):
        if kind in name.split(",")[0]:
            return kind
    return name.split(",")[0]


class AudioMuxer:
    """Adds the audio stream of ``ref`` to an output container and feeds it in step with
    the video (``feed_until``) so packets are interleaved, then ``finish``es the window."""

    def __init__(self, ref: AudioRef, output: OutputContainer, mode: str = "auto", bitrate: int = 192_000):
        self.ref = ref
        self.output = output
        kind = container_kind(output)
        allowed = COPY_OK.get(kind, set())
        can_copy = allowed is None or ref.codec in allowed
        if mode == "copy" and not can_copy:
            raise MediaError(f"{ref.path}: {ref.codec} audio cannot be copied into {kind}; use audio=aac or audio=auto")
        # auto copies only where an edit list can hide the pre-roll (MP4/MOV): Matroska
        # would shift every stream by it instead
        self.copy = mode == "copy" or (mode == "auto" and ref.copyable and can_copy and kind in ("mp4", "mov"))
        source = open_input(ref.path)
        self.input: InputContainer | None = source
        try:
            src = source.streams[ref.stream_index]
        except IndexError:
            raise MediaError(f"{ref.path}: audio stream {ref.stream_index} not found") from None
        if not isinstance(src, AudioStream):
            raise MediaError(f"{ref.path}: stream {ref.stream_index} is not audio")
        self.src = src
        self.end: float | None = ref.start + ref.duration if ref.duration is not None else None
        self.stream: AudioStream
        if self.copy:
            self.stream = output.add_stream_from_template(src)
            self._shift = round(ref.start / time_base(src))
        else:
            codec = MODE_ENCODER.get(mode) or ENCODE_TO.get(kind, "aac")
            if codec == "pcm_s16le" and kind == "mp4":
                raise MediaError("PCM audio cannot be stored in .mp4; use .mov/.mkv or audio=aac")
            rate = self.src.codec_context.sample_rate
            self.stream = output.add_stream(codec, rate=rate)
            self.stream.layout = self.src.codec_context.layout.name
            if codec == "aac":
                self.stream.bit_rate = bitrate
            self.stream.time_base = Fraction(1, rate)
            self._rate = rate
            self._resampler: av.AudioResampler | None = None
            self._fifo = av.AudioFifo()
            self._written = 0  # samples sent to the encoder
        self._packets = source.demux(src)
        self._preroll: Packet | None = None
        self._frames: Iterator[av.AudioFrame] | None = None
        self._done = False

    # --- feeding ------------------------------------------------------------------------
    def feed_until(self, seconds: float) -> None:
        """Mux audio up to ``seconds`` of output time (called after each video frame, so
        the two streams stay interleaved and the audio never runs past the video)."""
        if not self._done:
            self._feed(seconds)

    def finish(self, video_duration: float) -> None:
        """Write the rest of the window (never past the video's end) and flush."""
        if self._done:
            return
        limit = video_duration if self.end is None else min(video_duration, self.end - self.ref.start)
        self.end = self.ref.start + limit
        self._feed(limit)
        if not self.copy:
            self._drain_fifo(final=True)
            for packet in self.stream.encode(None):
                self.output.mux(packet)
        self._done = True
        self.close()

    def close(self) -> None:
        """Release the source file."""
        if self.input is not None:
            self.input.close()
            self.input = None

    def _feed(self, until: float) -> None:
        if self.copy:
            self._feed_copy(until)
        else:
            self._feed_encode(until)

    def _feed_copy(self, until: float) -> None:
        tb = time_base(self.src)
        start = self.ref.start
        for packet in self._iter_packets():
            if packet.pts is None:
                continue
            t = float(packet.pts * tb)
            t_end = float((packet.pts + (packet.duration or 0)) * tb)
            if t_end <= start + 1e-9:
                # before the window; the last such packet is kept as decoder pre-roll (AAC
                # needs the previous frame to decode the first one); the edit list hides it
                self._preroll = packet
                continue
            if self.end is not None and t >= self.end - 1e-9:
                return  # past the window
            if self._preroll is not None:
                self._mux_copy(self._preroll)
                self._preroll = None
            self._mux_copy(packet)
            if t - start >= until:
                return

    def _mux_copy(self, packet: Packet) -> None:
        if packet.pts is not None:
            packet.pts -= self._shift
        if packet.dts is not None:
            packet.dts -= self._shift
        packet.stream = self.stream
        self.output.mux(packet)

    def _iter_packets(self) -> Iterator[Packet[AudioStream]]:
        """The source's audio packets that hold data, until its end or a damaged tail."""
        while True:
            try:
                packet = next(self._packets, None)
            except av.FFmpegError:
                return
            if packet is None:
                return
            if packet.size:
                yield packet

    def _feed_encode(self, until: float) -> None:
        rate = self._rate
        until_samples = math.floor(until * rate + 0.5)
        if self.end is not None:
            until_samples = min(until_samples, round((self.end - self.ref.start) * rate))
        while self._written + self._fifo.samples < until_samples:
            frame = self._next_decoded()
            if frame is None:
                break
            self._take(frame)
        self._drain_fifo(final=False)

    def _next_decoded(self) -> av.AudioFrame | None:
        if self._frames is None:
            self._frames = self._decoded()
        return next(self._frames, None)

    def _decoded(self) -> Iterator[av.AudioFrame]:
        for packet in self._iter_packets():
            try:
                frames = packet.decode()
            except av.FFmpegError:
                continue  # a damaged packet: skip it
            yield from frames
        try:
            yield from self.src.codec_context.decode(None)
        except av.FFmpegError:
            pass

    def _take(self, frame: av.AudioFrame) -> None:
        """Cut one decoded frame to the window and queue its samples for encoding."""
        rate = self._rate
        if frame.pts is None or frame.time_base is None:
            return  # cannot be placed on the timeline
        t0 = frame.pts * frame.time_base  # exact Fraction
        first = round((Fraction(self.ref.start).limit_denominator(10**9) - t0) * frame.sample_rate)
        last = frame.samples
        if self.end is not None:
            last = min(last, round((Fraction(self.end).limit_denominator(10**9) - t0) * frame.sample_rate))
        if last <= 0 or first >= frame.samples:
            return
        if self._resampler is None:
            fmt = self.stream.codec_context.format
            self._resampler = av.AudioResampler(
                format=fmt.name if fmt else "s16", layout=self.stream.layout.name, rate=rate
            )
        frame.pts = None
        for out in self._resampler.resample(frame):
            data = out.to_ndarray()
            lo, hi = max(first, 0), min(last, out.samples)
            if lo == 0 and hi == out.samples:
                self._fifo.write(out)
                continue
            planar = out.format.is_planar
            piece = data[:, lo:hi] if planar else data[:, lo * out.layout.nb_channels : hi * out.layout.nb_channels]
            if piece.size == 0:
                continue
            cut = av.AudioFrame.from_ndarray(piece.copy(), format=out.format.name, layout=out.layout.name)
            cut.sample_rate = out.sample_rate
            self._fifo.write(cut)

    def _drain_fifo(self, final: bool) -> None:
        size = self.stream.codec_context.frame_size or 1024
        while self._fifo.samples >= size or (final and self._fifo.samples > 0):
            frame = self._fifo.read(min(size, self._fifo.samples))
            assert frame is not None, "the FIFO holds at least that many samples"
            frame.pts = self._written
            frame.time_base = Fraction(1, self._rate)
            self._written += frame.samples
            for packet in self.stream.encode(frame):
                self.output.mux(packet)
