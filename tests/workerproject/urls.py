from django.urls import path

from workerproject import views

urlpatterns = [
    path("state/", views.state),
    path("orm/", views.orm),
    path("group-send/", views.group_send),
    path("async-helper/", views.async_helper),
]
