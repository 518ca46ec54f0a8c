"""gantry's reusable ComponentResources and the pure helpers they are built from.

Components take typed Args and never read Pulumi config; `__main__.py` turns stack config into
`components.settings.Settings` once and hands each component what it needs.
"""
