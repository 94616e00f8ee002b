"""Pulumi components: AWS resources plus the remote commands that configure hosts.

Each component's scripts come from a pure renderer in `renderers/` and its templates in
`templates/`; nothing here assembles shell text by hand.
"""
