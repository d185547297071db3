"""Domains: each domain's pure rules, below the projections and the handlers that both need them.

A rule written once here (who is present in a document) is folded alike by a decider and by a projection, which
may not import each other; `eventstore` stays a generic log underneath.
"""
