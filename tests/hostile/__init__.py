"""Hostile-input suite: a corpus of attacks as data (cases.py), each refused with a coded error."""
