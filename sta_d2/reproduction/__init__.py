"""Reproducing the STA/ISTA paper: its tables as data, the runs of each table, and our results next to the paper's."""
