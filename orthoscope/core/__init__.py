"""Foundations: what every other part of orthoscope stands on, importing nothing from the rest of the package.

* ``history`` — the ``History`` (what probes saw) and ``keys`` — its ``"<metric>/<where>"`` keys;
* ``checkpoint`` — checkpoint files (one safetensors file with a checked JSON header, written atomically);
* ``validate`` — one user-given number checked, and ``ConfigError``;
* ``targets`` — module selection by path, with peft's rules;
* ``memory`` — activation memory measured (the bytes autograd saves);
* ``version`` — the package version.
"""
