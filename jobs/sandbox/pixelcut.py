"""Sandbox for pixelcut: not written yet."""

urlpatterns = []
