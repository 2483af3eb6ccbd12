"""Shared fixtures: the local dev cluster (control plane, GPU node, S3), started once per session.

Tests marked ``cluster`` or ``s3`` (or asking for one of the fixtures) get the real components; see
``videogen_devcluster.pytest_fixtures`` for the fixture list and their lifetimes.
"""

from videogen_devcluster.pytest_fixtures import (
    _devcluster_for_marked_tests,
    _devcluster_session,
    batch_v1,
    cluster,
    control_plane,
    core_v1,
    devcluster,
    gpu_node,
    k8s_api,
    kubectl,
    namespace,
    pytest_collection_modifyitems,
    pytest_runtest_makereport,
    s3,
    videogen_crds,
)

__all__ = [
    "_devcluster_for_marked_tests",
    "_devcluster_session",
    "batch_v1",
    "cluster",
    "control_plane",
    "core_v1",
    "devcluster",
    "gpu_node",
    "k8s_api",
    "kubectl",
    "namespace",
    "pytest_collection_modifyitems",
    "pytest_runtest_makereport",
    "s3",
    "videogen_crds",
]
