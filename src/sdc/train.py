"""`python -m sdc.train [experiment=...] [overrides]`: train, then test the selected checkpoint
once. The work is `sdc.training.train`; this is the documented entry point."""

from sdc.training.train import main

if __name__ == "__main__":
    main()
