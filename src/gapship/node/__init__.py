"""gapship-doctor's checks: standard library only, Python 3.6+, shipped as PREFIX/gapship/node/.

Nothing here may import anything outside the standard library: it runs on the bundled
interpreter of an offline node, where nothing else can be installed.
"""
