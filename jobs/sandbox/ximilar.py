"""Sandbox for ximilar: not written yet."""

urlpatterns = []
