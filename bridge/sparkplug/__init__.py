"""Sparkplug B 3.0: the payload format and the host application's view of edge nodes."""
