// salsdk Android demo: the app (LiteRT, Views) and the pure-Kotlin pre/post-processing core it shares with the tests.
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}

dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()
        mavenCentral()
    }
}

rootProject.name = "salsdk-android-demo"
include(":core", ":app")
