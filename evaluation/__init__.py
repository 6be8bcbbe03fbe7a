"""Offline evaluation: metrics, protocols (splits), uncertainty, baselines, the runner and reports.

Metrics are pure functions over arrays (:mod:`evaluation.metrics`); protocols build the
training snapshot and the held-out pairs (:mod:`evaluation.splits`); every method, whatever
package it lives in, is found through :mod:`evaluation.registry` and scored by
:mod:`evaluation.runner`.
"""
