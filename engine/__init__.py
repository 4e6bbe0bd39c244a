"""The machinery the scripts share: command line, hardware, a training run, an evaluation and its
report, calibration and prediction. It imports only the layers below it (docs/architecture.md)."""
