"""What trained models do: evaluation runs, per-class and per-group execution statistics,
clustering, threshold sweeps, figures and HTML reports, adversarial attacks, the demo."""
