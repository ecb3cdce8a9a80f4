"""The application: the Python API (``convert_video``, ``matte``), backend choice and loading,
the ``matanyone`` command line and the offline demo."""
