"""One module per tab; each exposes `build_<name>_tab(...)` and is composed in `app/ui.py`."""
