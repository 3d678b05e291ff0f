"""The digit-string reader: the speech embedding's frames, a small network over them, CTC.

The pretrained embedding (`sdc.pretrained.speech_embedding`, its top fine-tuned on strings)
turns 8 kHz audio into one 96-number frame every 80 ms, each heard over the 0.775 s before it.
A stack of residual 1-D convolutions (dilated, so each output sees about a second of frames
either side) gives every frame the probability of each digit and of "blank" (no new digit
here). CTC trains both without saying where each digit lies, so strings need no alignment and
digits need no pause between them; reading is the likeliest class per frame, repeats merged,
blanks dropped, after the recording is heard at a few speeds and each frame's probabilities
averaged (`read_log_probs`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torchaudio
from torch import nn

from sdc.pretrained.speech_embedding import DIM, SAMPLE_RATE, SpeechEmbedding, frames_after
from sdc.strings.config import ReaderNetConfig

FRAME_SECONDS = 0.08
"""The embedding's step: one frame every 8 x 10 ms."""
RECEPTIVE_SECONDS = 0.775
"""What one frame hears: 76 frames of 10 ms plus a 32 ms window."""
MAX_DIGIT_SECONDS = 0.5
"""The longest a read digit is said to last when no other follows it soon: FSDD's digits take
0.25-0.6 s."""


class _Block(nn.Module):
    def __init__(self, channels: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, 3, padding=dilation, dilation=dilation)
        self.norm = nn.BatchNorm1d(channels)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop(torch.relu(self.norm(self.conv(x))))


class FrameNetwork(nn.Module):
    """(B, T, 96) frames -> (B, T, labels + 1) logits; the last class is CTC's blank."""

    def __init__(self, n_labels: int, channels: int, dilations: tuple[int, ...], dropout: float):
        super().__init__()
        self.input = nn.Sequential(nn.Conv1d(DIM, channels, 1), nn.BatchNorm1d(channels), nn.ReLU())
        self.blocks = nn.Sequential(*(_Block(channels, d, dropout) for d in dilations))
        self.output = nn.Conv1d(channels, n_labels + 1, 1)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.input(frames.transpose(1, 2)))
        return self.output(x).transpose(1, 2)


class DigitStringReader(nn.Module):
    """8 kHz waveforms -> per-frame log-probabilities of each label and blank (the last)."""

    def __init__(
        self,
        labels: tuple[str, ...],
        net: dict,
        sample_rate: int = 8000,
        pad_seconds: float = 0.4,
        weights_dir: str = "data/pretrained",
        test_time_speeds: tuple[float, ...] = (1.0,),
    ) -> None:
        super().__init__()
        self.labels = tuple(labels)
        self.blank = len(self.labels)
        self.sample_rate = sample_rate
        self.pad = round(pad_seconds * sample_rate)
        """Silence each side, so that the first and last digits are heard whole by some frame."""
        self.weights_dir = weights_dir
        self.resample = torchaudio.transforms.Resample(sample_rate, SAMPLE_RATE)
        self.embedding = SpeechEmbedding()
        cfg = ReaderNetConfig(**net)
        self.network = FrameNetwork(
            len(self.labels), cfg.channels, tuple(cfg.dilations), cfg.dropout
        )
        self.test_time_speeds = tuple(float(s) for s in test_time_speeds)

    @torch.no_grad()
    def load_pretrained(self) -> None:
        """The embedding's pinned weights (downloaded into `weights_dir` on first use)."""
        self.embedding.load_pinned(self.weights_dir)

    def frame_count(self, samples: int) -> int:
        """Frames for a recording of `samples` samples at `sample_rate`."""
        return max(0, SpeechEmbedding.steps(self._heard_samples(samples)))

    def _heard_samples(self, samples: int) -> int:
        """Samples at 16 kHz that the embedding hears of a recording, its padding included."""
        return round((samples + 2 * self.pad) * SAMPLE_RATE / self.sample_rate)

    def _heard(self, waves: torch.Tensor) -> torch.Tensor:
        """(B, samples) waveforms, padded and at 16 kHz, as the embedding hears them."""
        return self.resample(nn.functional.pad(waves, (self.pad, self.pad)))

    @torch.no_grad()
    def frames(self, waves: torch.Tensor) -> torch.Tensor:
        """(B, samples) zero-padded waveforms -> (B, T, 96) frames; `frame_count` of them are a
        recording's own, the rest its padding's."""
        return self.embedding(self._heard(waves))

    @torch.no_grad()
    def below(self, waves: torch.Tensor, top: int) -> torch.Tensor:
        """(B, samples) zero-padded waveforms -> the embedding's frozen bottom's output
        (B, C, T, W), channels last: everything under its last `top` convolutions."""
        embedding = self.embedding
        image = embedding.log_mel(embedding.power(self._heard(waves)))
        image = image.contiguous(memory_format=torch.channels_last)
        return embedding.network[: embedding.top_start(top)](image)

    def above(self, below: torch.Tensor, top: int) -> torch.Tensor:
        """`below`'s output -> (B, T, 96) frames, through the last `top` convolutions."""
        above = self.embedding.network[self.embedding.top_start(top) :]
        return above(below).squeeze(-1).transpose(1, 2)

    def below_count(self, samples: int, top: int) -> int:
        """Time positions of `below`'s output that are a recording's own."""
        bottom = self.embedding.network[: self.embedding.top_start(top)]
        image_frames = SpeechEmbedding.image_frames(self._heard_samples(samples))
        return frames_after(bottom, max(0, image_frames))

    def above_count(self, positions: int, top: int) -> int:
        """Frames that `above` makes of `positions` time positions of `below`'s output."""
        return frames_after(self.embedding.network[self.embedding.top_start(top) :], positions)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.network(frames).log_softmax(dim=-1)

    @torch.no_grad()
    def read_log_probs(self, wave: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Per-frame log-probabilities (T, labels + 1) of one recording (samples,), heard at
        each of `test_time_speeds` (1.0: as recorded) with the probabilities averaged on the
        recording's own frames: each view's frames are interpolated back to the times they
        heard. On held-out voices, three speeds cut the digit errors (docs/results.md).

        `start`: the recording's first sample in a longer stream (a live buffer's). Each view
        begins on the stream's own grid of that view's frames, so a buffer's views hear from
        the points the whole recording's views hear from. Nicolas's 10-digit strings read live
        and whole came out alike 84% of the time with views begun where the buffer begins, 94%
        with views begun on the grid, as with one view alone (docs/results.md)."""
        frames = self.frame_count(wave.shape[-1])
        nothing = torch.zeros(0, len(self.labels) + 1)
        if frames == 0:
            return nothing
        if self.test_time_speeds == (1.0,):  # one hearing, as recorded
            return self(self.frames(wave[None])[:, :frames])[0]
        probs = []
        rate = self.sample_rate
        for speed in self.test_time_speeds:
            heard, skip = wave[None], 0
            if speed != 1.0:  # played `speed` times faster
                played = round(speed * rate)  # the rate the recording is taken to have
                period = round(FRAME_SECONDS * played)  # samples between the view's frames
                skip = -start % period
                if skip >= heard.shape[-1]:  # the recording ends before the view's first frame
                    continue
                heard = torchaudio.functional.resample(heard[:, skip:], played, rate)
            count = self.frame_count(heard.shape[-1])
            if count:  # a faster view of a very short recording may be too short to hear
                log_probs = self(self.frames(heard)[:, :count])[0]
                probs.append(self._on_frames(log_probs.exp(), speed, frames, skip / rate))
        if not probs:
            return nothing
        return torch.stack(probs).mean(dim=0).clamp_min(1e-12).log()

    def _on_frames(
        self, probs: torch.Tensor, speed: float, frames: int, skipped: float = 0.0
    ) -> torch.Tensor:
        """A view's (T_view, C) probabilities at the recording's `frames` frames: a frame
        centred at time t of the recording is at (t - skipped) / speed in a view of all but its
        first `skipped` seconds, linearly interpolated between the view's two nearest frames."""
        if speed == 1.0:
            return probs
        centres = self.frame_time(torch.arange(frames))
        # The inverse of `frame_time`, in the view: which (fractional) frame is centred there.
        at = ((centres - skipped) / speed - self.frame_time(0)) / FRAME_SECONDS
        at = at.clamp(0, probs.shape[0] - 1)
        low = at.floor().long()
        high = (low + 1).clamp(max=probs.shape[0] - 1)
        share = (at - low)[:, None]
        return probs[low] * (1 - share) + probs[high] * share

    def frame_time(self, index: int | torch.Tensor) -> float | torch.Tensor:
        """Seconds into the recording where frame `index`'s stretch of audio is centred."""
        return index * FRAME_SECONDS + RECEPTIVE_SECONDS / 2 - self.pad / self.sample_rate


@dataclass(frozen=True)
class ReadDigit:
    """A digit read: its label index, probability at its peak frame, and time span (s)."""

    label: int
    confidence: float
    start: float
    end: float
    frame: int = 0
    """Its peak frame: where its probabilities are read."""


def greedy_read(
    log_probs: torch.Tensor, reader: DigitStringReader, duration: float
) -> list[ReadDigit]:
    """The likeliest class per frame, repeats merged, blanks dropped.

    A digit's CTC spike comes where its frame's stretch of audio is centred on the digit's
    onset (measured on strings with known times: 0.03-0.08 s early), so a digit starts there
    and ends where the next one starts, or after at most `MAX_DIGIT_SECONDS`, within the
    recording.
    """
    best = log_probs.argmax(dim=-1).tolist()
    probs = log_probs.exp()
    runs: list[tuple[int, int, int]] = []  # (label, first frame, frame after the last)
    run_start, previous = 0, reader.blank
    for t, label in enumerate([*best, reader.blank]):
        if label != previous:
            if previous != reader.blank:
                runs.append((previous, run_start, t))
            run_start, previous = t, label
    starts = [max(0.0, reader.frame_time(first)) for _, first, _ in runs]
    read = []
    for k, (label, first, after) in enumerate(runs):
        following = starts[k + 1] if k + 1 < len(runs) else duration
        end = min(following, starts[k] + MAX_DIGIT_SECONDS, duration)
        frame = first + int(probs[first:after, label].argmax())
        read.append(ReadDigit(label, float(probs[frame, label]), min(starts[k], end), end, frame))
    return read
