"""CustomResourceDefinitions and APIServices, as upstream's apiextensions-apiserver and kube-aggregator's
local APIServices. Import the modules themselves (this package's `__init__` stays empty so that the
registry can import its hooks without a cycle):

    structural.py   structural schemas: validate, prune, default custom resources; check a CRD's schema
    definition.py   defaulting and validation of CustomResourceDefinition objects
    catalog.py      the served custom resources (CustomResource rows) and their lookup
    hooks.py        what the registry and server call: admission, scale, tables, discovery entries
    openapi.py      the custom resources' OpenAPI v2 / v3 documents
    controller.py   names, Established, serving and the instance cleanup when a CRD is deleted
    apiservice.py   apiregistration.k8s.io/v1 APIServices: the Local ones for every served group version

Errors are the apiserver's own (errors.APIError, 422 with field causes); nothing here raises anything else.
"""
