"""Experiments from the paper, built on the library's monitor and steer functions."""
