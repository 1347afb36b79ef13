"""Sandbox for pixazo: not written yet."""

urlpatterns = []
