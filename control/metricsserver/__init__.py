"""metrics-server's role: metrics.k8s.io/v1beta1 from the kubelets' /metrics/resource.

    MetricsAPI(lister, kubelet_context).serve(plural, namespace, name, label_selector) -> object or list
    make_app(api, allowed_names) / serve(...)   the HTTPS server the apiserver proxies to (_server.py)

    MetricsNotFound   no metrics for the object named (404)
"""

from control.metricsserver._core import (
    GROUP,
    GROUP_VERSION,
    VERSION,
    Lister,
    MetricsAPI,
    MetricsNotFound,
    api_group,
    as_table,
    parse_path,
    resource_list,
)
from control.metricsserver._server import ClientLister, make_app, serve, server_context

__all__ = ["GROUP", "GROUP_VERSION", "VERSION", "ClientLister", "Lister", "MetricsAPI", "MetricsNotFound",
           "api_group", "as_table", "make_app", "parse_path", "resource_list", "serve", "server_context"]
