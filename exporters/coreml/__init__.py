"""CoreML export: five fixed-size ML Program packages (.mlpackage) and their manifest.

Importing this package needs neither torch nor coremltools; they are imported when an export or
a check runs, so the plugin registry stays cheap to load on every machine.
"""

from .checks import (
    CheckLimits,
    ConstantTensorError,
    CoreMLCheckError,
    CoreMLConversionError,
    CoreMLExportError,
    DynamicShapeError,
    ForbiddenOpError,
    InterfaceMismatchError,
    PackageReport,
    PrecisionError,
    RankLimitError,
    SingletonSliceError,
    check_package,
)
from .convert import DEFAULT_TARGET, TARGETS, convert_module
from .exporter import DEFAULT_DIMS, EXPORTER_VERSION, CoreMLExporter, cache_version, package_name, runtime_available
from .validate import CoreMLValidationError, validate_packages

__all__ = [
    "CheckLimits",
    "ConstantTensorError",
    "CoreMLCheckError",
    "CoreMLConversionError",
    "CoreMLExportError",
    "CoreMLExporter",
    "CoreMLValidationError",
    "DEFAULT_DIMS",
    "DEFAULT_TARGET",
    "DynamicShapeError",
    "EXPORTER_VERSION",
    "cache_version",
    "ForbiddenOpError",
    "InterfaceMismatchError",
    "PackageReport",
    "PrecisionError",
    "RankLimitError",
    "SingletonSliceError",
    "TARGETS",
    "check_package",
    "convert_module",
    "package_name",
    "runtime_available",
    "validate_packages",
]
