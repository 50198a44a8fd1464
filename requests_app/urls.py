from django.urls import path

from requests_app import views

app_name = "requests_app"

urlpatterns = [
    path("", views.my_requests, name="my-requests"),
    path("new/", views.new_request, name="new"),
    path("<int:pk>/", views.request_detail, name="detail"),
    path("<int:pk>/cancel/", views.request_cancel, name="cancel"),
    path("<int:pk>/extend/", views.request_extend, name="extend"),
]
