"""Experiment layer: ablations, Optuna studies, MLflow tracking and reports.

The only part of remdinet that imports mlflow, optuna, typer, pandas and matplotlib.
"""
