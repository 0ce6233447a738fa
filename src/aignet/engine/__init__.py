"""Inference engine over trained models: MAC accounting, the fused fast form, execution
records, the Predictor, evaluation loops, BatchNorm recalibration and the speed benchmark."""
