"""Networks that map a front end's features to digit logits (B, n_classes), and the member that
joins a front end to one."""
