"""The machinery the scripts share: command line, hardware, a training run and its state,
an evaluation and its report, calibration and prediction. Imports networks/, datasets/, the
method modules and core/; nothing below imports it."""
