"""Where runs come from and go to: the on-disk run format (`store`: atomic writer, pruned reader, checks),
the importers of user logs (`imports`, with `import_checks` and the TensorBoard reader `tfevents`) and the
recorder that measures your own models (`recorder`, exposed as `dynamics.record`).

Nothing is imported here, so `import dynamics.runs.store` stays as light as the store itself.
"""
