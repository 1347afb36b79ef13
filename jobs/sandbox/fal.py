"""Sandbox for fal: not written yet."""

urlpatterns = []
