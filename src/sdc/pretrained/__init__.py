"""Pretrained networks that sdc builds on, fetched from a pinned release and run in PyTorch."""
