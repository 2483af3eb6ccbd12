"""A local Kubernetes control plane, S3 endpoint and GPU node for developing the VideoGen operator.

Everything runs from real binaries built from Go modules (``hack/build-binaries.sh``); nothing needs
Docker. Modules are imported lazily by their users, so this package stays cheap to import.
"""

from .binaries import KUBERNETES_VERSION, Binaries, find_binaries
from .controlplane import ControlPlane
from .devcluster import DevCluster
from .gpunode import LocalGpuNode
from .procs import StartupError
from .s3 import S3Server

__all__ = [
    "KUBERNETES_VERSION",
    "Binaries",
    "ControlPlane",
    "DevCluster",
    "LocalGpuNode",
    "S3Server",
    "StartupError",
    "find_binaries",
]
