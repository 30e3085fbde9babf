"""The framework's own registered implementations, imported by plugin discovery before plugins.

Add a module here when it registers classes that a default config or a plugin relies on.
"""
BUILTIN_MODULES = (
)
