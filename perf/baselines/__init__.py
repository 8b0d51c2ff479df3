"""Committed per-machine baselines and the regression check of a measured result against one."""
