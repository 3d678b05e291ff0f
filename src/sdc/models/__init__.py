"""Networks that map an MFCC image (B, 1, n_mfcc, frames) to digit logits (B, n_classes)."""
