"""Testing trained models: on a split (`sdc evaluate`), under the robustness conditions, and
combined into ensembles (`sdc ensemble`)."""
