# outpost-devkafka integration test: starts the IN-MEMORY DEVELOPMENT broker on a free loopback
# port and checks it with kcat. Included from tests/integration/CMakeLists.txt.
add_test(NAME integration.devkafka
         COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/devkafka_test.sh $<TARGET_FILE:outpost-devkafka>)
set_tests_properties(integration.devkafka PROPERTIES LABELS integration TIMEOUT 60)
