"""Stand-in weights for the speech embedding, for tests that must not download the real ones."""

from __future__ import annotations

import torch
import torchaudio
from torch import nn

from sdc.pretrained.speech_embedding import N_FFT, SpeechEmbedding


def stand_in(embedding: SpeechEmbedding, seed: int = 0) -> SpeechEmbedding:
    """Weights shaped like the real ones, for tests that must not download: a Hann-windowed
    DFT, mel filters from 60 Hz to 3.8 kHz, seeded random convolutions."""
    t = torch.arange(N_FFT, dtype=torch.float64)
    k = torch.arange(N_FFT // 2 + 1, dtype=torch.float64).unsqueeze(1)
    window = torch.hann_window(N_FFT, periodic=True, dtype=torch.float64)
    angle = 2 * torch.pi * k * t / N_FFT
    fbanks = torchaudio.functional.melscale_fbanks(N_FFT // 2 + 1, 60.0, 3800.0, 32, 16000)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        embedding.stft_real.copy_((torch.cos(angle) * window).unsqueeze(1).float())
        embedding.stft_imag.copy_((-torch.sin(angle) * window).unsqueeze(1).float())
        embedding.mel.copy_(fbanks)
        for conv in embedding.network:
            if isinstance(conv, nn.Conv2d):
                fan_in = conv.weight[0].numel()
                scale = 1.5 / fan_in**0.5  # activations keep their size through 20 layers
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * scale)
                if conv.bias is not None:
                    conv.bias.copy_(torch.randn(conv.bias.shape, generator=generator) * 0.1)
    return embedding
