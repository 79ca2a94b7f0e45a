from django.urls import path
from hits import views

urlpatterns = [
    path("", views.home),
    path("hello", views.hello),
    path("report", views.report),
]
