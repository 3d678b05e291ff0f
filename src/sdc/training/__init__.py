"""Training: the LightningModule, its callbacks, the test report and `train(cfg)`."""
