"""matanyone-openvino: OpenVINO backends for matanyone-engine, as a separately installed plugin.

Nothing to import by hand: installing the package registers ``matanyone_openvino.plugin`` under
the ``matanyone_engine`` entry-point group, and ``matanyone backends`` lists ``openvino-cpu`` and
``openvino-gpu``. The plugin module is kept import-light (openvino loads on first use) because
the engine imports every plugin for every command.
"""

__version__ = "0.1.0"
