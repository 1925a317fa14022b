"""Held-out evaluation: zero-/few-shot rollouts, results tables, the paper's figures, and the report.

    from hyperzero.evaluation import evaluate, EvalConfig
    evaluate("runs/quickstart", EvalConfig(episodes=10))   # writes runs/quickstart/eval/...
"""
from hyperzero.evaluation.evaluate import EvalConfig, EvalResult, evaluate, find_fits
from hyperzero.evaluation.metrics import ResultRow, read_results, summarize
from hyperzero.evaluation.stats import MethodStats, aggregate

__all__ = ["EvalConfig", "EvalResult", "MethodStats", "ResultRow", "aggregate", "evaluate", "find_fits", "read_results",
           "summarize"]
